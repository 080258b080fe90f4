"""The native OCI runtime: the shim, the container's init, syscalls and cgroups."""
