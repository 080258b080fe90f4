"""`shipyard up`: create and start the project's containers (observe -> reconcile -> plan ->
execute), then, unless detached, follow their logs until they exit or Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.cli import Context
    from compose.model import Project
    from engine import Engine

HELP = "Create and start containers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("services", nargs="*", metavar="SERVICE")
    add("-d", "--detach", action="store_true", help="run containers in the background")
    add("--build", action="store_true", help="build images before starting containers")
    add("--no-build", action="store_true", help="don't build an image, even if it's missing")
    add("--pull", choices=["always", "missing", "never", "build"], default=None,
        help="pull images before running (build: build what has a build section)")
    add("--force-recreate", action="store_true",
        help="recreate containers even if their configuration and image haven't changed")
    add("--no-recreate", action="store_true",
        help="if containers already exist, don't recreate them")
    add("--always-recreate-deps", action="store_true", help="recreate dependent containers")
    add("--no-deps", action="store_true", help="don't start linked services")
    add("--no-start", action="store_true", help="don't start the services after creating them")
    add("--remove-orphans", action="store_true",
        help="remove containers for services not defined in the Compose file")
    add("-V", "--renew-anon-volumes", action="store_true",
        help="recreate anonymous volumes instead of retrieving data from the previous "
             "containers")
    add("--scale", action="append", default=[], metavar="SERVICE=NUM",
        help="scale SERVICE to NUM instances (overrides scale in the Compose file)")
    add("-t", "--timeout", type=float, default=None,
        help="shutdown timeout in seconds when attached or when containers are recreated")
    add("--wait", action="store_true", help="wait for services to be running|healthy")
    add("--wait-timeout", type=float, default=None, help="maximum seconds to wait")
    add("--abort-on-container-exit", action="store_true",
        help="stop all containers if any container stops")
    add("--abort-on-container-failure", action="store_true",
        help="stop all containers if any container exits with a failure")
    add("--exit-code-from", metavar="SERVICE",
        help="return the exit code of the selected service container")
    add("--attach", action="append", default=[], metavar="SERVICE",
        help="restrict attaching to the specified services")
    add("--no-attach", action="append", default=[], metavar="SERVICE",
        help="do not attach (stream logs) to the specified services")
    add("--attach-dependencies", action="store_true", help="also attach to dependencies")
    add("--timestamps", action="store_true", help="show timestamps")
    add("--no-log-prefix", action="store_true", help="don't print a prefix in logs")
    add("--no-color", action="store_true", help="produce monochrome output")
    add("--dry-run", action="store_true", help="print the plan and change nothing")
    add("--parallel", type=int, default=0, help="at most this many engine calls at once")
    add("--quiet-pull", action="store_true", help="pull without printing progress")
    add("-y", "--yes", action="store_true", help="assume yes to prompts")


def _scale(items: list[str]) -> dict[str, int]:
    from engine.errors import InvalidArgument

    out = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise InvalidArgument(f'--scale "{item}": expected SERVICE=NUMBER')
        out[name] = int(count)
    return out


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.errors import InvalidArgument

    if args.exit_code_from:
        args.abort_on_container_exit = True
    if args.detach and (args.abort_on_container_exit or args.abort_on_container_failure):
        raise InvalidArgument("-d cannot be combined with --abort-on-container-exit, "
                              "--abort-on-container-failure or --exit-code-from")
    if args.force_recreate and args.no_recreate:
        raise InvalidArgument("--force-recreate and --no-recreate cannot be combined")
    if args.build and args.no_build:
        raise InvalidArgument("--build and --no-build cannot be combined")
    converged = _converge(args, ctx)
    if converged is None or args.detach or args.no_start or args.wait:
        return 0
    return _attached(*converged, args, ctx)


def _converge(args: argparse.Namespace,
              ctx: Context) -> tuple[Engine, Project, frozenset[str]] | None:
    """Brings the project to what its file says; None for --dry-run (nothing done)."""
    from compose import reconcile
    from compose import translate as t
    from compose.lock import project_lock
    from compose.observe import observe
    from compose.progress import for_flags
    from compose.project import check_services, load_project
    from engine.errors import Error

    project = load_project(args, ctx, args.services)
    if args.exit_code_from:  # else `up` would follow logs, waiting for a service never there
        check_services(project, [args.exit_code_from])
    engine = ctx.engine()
    source_dir = str(engine.layout.root / "compose" / project.name)
    options = reconcile.UpOptions(
        services=tuple(args.services), no_deps=args.no_deps,
        force_recreate=args.force_recreate, no_recreate=args.no_recreate,
        always_recreate_deps=args.always_recreate_deps, no_start=args.no_start,
        remove_orphans=args.remove_orphans, renew_anon_volumes=args.renew_anon_volumes,
        scale=_scale(args.scale), pull=args.pull, build=args.build, no_build=args.no_build,
        wait=args.wait, source_dir=source_dir)
    progress = for_flags(args, ctx.stderr)
    chosen, _ = reconcile.selected_services(project, options.services, options.no_deps)
    images = [t.default_image(project, project.services[s]) for s in sorted(chosen)]
    # The fork server's interpreter boots on the CPU this one leaves idle while it observes
    # and plans (not for a plan that starts nothing by its flags, nor imported for it).
    warm: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if not (args.dry_run or args.no_start):
        from engine.runtime import launch

        warm = launch.warm_forkserver()
    with warm, project_lock(engine.layout, project.name, say=progress.message):
        observed = observe(engine, project.name, images=images)
        plan = reconcile.up(project, observed, options)
        if args.dry_run:
            ctx.stdout.write(plan.text())
            return None
        for warning in plan.warnings:
            progress.message(f"warning: {warning}")
        if plan.empty:
            progress.message(f"project {project.name}: everything is up to date")
        else:
            from compose import execute  # only when there is something to do
            from compose.cli import parallel_limit
            from compose.commands.imagebuild import registry_factory

            settings = execute.Settings(timeout=args.timeout, parallel=parallel_limit(args, ctx),
                                        source_dir=source_dir, wait_timeout=args.wait_timeout,
                                        renew_anon_volumes=args.renew_anon_volumes,
                                        registry=registry_factory(ctx),
                                        quiet_pull=args.quiet_pull)
            outcome = execute.run(engine, project, plan, progress, settings)
            progress.close()
            if not outcome.ok:
                raise Error(execute.report(outcome, plan))
    return engine, project, chosen


# ---- attached mode -------------------------------------------------------------------------

def _attached(engine: Engine, project: Project, chosen: frozenset[str],
              args: argparse.Namespace, ctx: Context) -> int:
    """Streams the logs of the attached services' containers with `name  | ` prefixes until
    they all exit (or one does, with --abort-on-container-exit). Ctrl-C stops the stack
    gracefully; a second Ctrl-C kills it."""
    import queue
    import threading

    from compose.commands.logs import use_colour
    from compose.logview import LogView
    from compose.observe import project_containers

    attach = set(args.attach or (chosen if args.attach_dependencies or not args.services
                                 else args.services)) - set(args.no_attach)
    containers = project_containers(engine, project.name, sorted(chosen))
    followed = [c for c in containers if c.service in attach]
    view = LogView(ctx.stdout, color=use_colour(ctx, getattr(args, "ansi", "auto"),
                                                args.no_color),
                   prefix=not args.no_log_prefix, timestamps=args.timestamps)
    for c in followed:
        view.add(c.name)
    finished: queue.Queue = queue.Queue()

    def follow(c) -> None:
        from engine.runtime import logs

        try:
            # This run's output only (a container kept from an earlier `up` has older logs).
            since = engine.containers.state(c.record).started_at or None
            for entry in logs.follow(str(c.record.directory), since=since):
                view.write(c.name, entry.text, entry.time)
        finally:
            finished.put(c)

    for c in followed:
        threading.Thread(target=follow, args=(c,), daemon=True).start()
    exit_code = 0
    remaining = len(followed)
    try:
        while remaining:
            try:
                c = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            remaining -= 1
            state = engine.containers.state(c.record)
            code = 255 if state.status == "dead" else state.exit_code
            view.message(c.name, f"exited with code {code}")
            if args.exit_code_from and c.service == args.exit_code_from:
                exit_code = code
            abort = args.abort_on_container_exit or (args.abort_on_container_failure
                                                     and code != 0)
            if abort:
                if not args.exit_code_from and code != 0:
                    exit_code = code
                ctx.stderr.write("Aborting on container exit...\n")
                _stop_all(engine, project, args, ctx)
                break
        return exit_code
    except KeyboardInterrupt:
        ctx.stderr.write("Gracefully stopping... (press Ctrl+C again to force)\n")
        try:
            _stop_all(engine, project, args, ctx)
        except KeyboardInterrupt:
            _kill_all(engine, project)
        return 130


def _stop_all(engine: Engine, project: Project, args: argparse.Namespace,
              ctx: Context) -> None:
    from compose import execute, reconcile
    from compose.cli import parallel_limit
    from compose.observe import observe
    from compose.progress import for_flags

    plan = reconcile.stop(project, observe(engine, project.name))
    progress = for_flags(args, ctx.stderr)
    execute.run(engine, project, plan, progress,
                execute.Settings(timeout=args.timeout, parallel=parallel_limit(args, ctx)))
    progress.close()


def _kill_all(engine: Engine, project: Project) -> None:
    from compose.observe import project_containers
    from engine.errors import Error

    for c in project_containers(engine, project.name):
        if c.running:
            try:
                engine.containers.kill(c.record)
            except Error:
                pass
