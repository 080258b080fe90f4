"""Pure: which images `up` builds or pulls (plan nodes), and the plan of `shipyard build`.

The image a service runs is `translate.default_image`: its `image:`, else
`<project>-<service>`. Containers that need an image node's result come `after` it; the
reconciler adds a `container refresh` for kept containers whose image is (re)made here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compose import translate as t
from compose.plan import Plan, PlanNode, ordered
from engine.errors import InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:
    from compose.model import Project, Service
    from compose.observe import Observed
    from compose.reconcile import UpOptions


def _policy(svc: Service, options: UpOptions) -> str:
    policy = options.pull or svc.pull_policy or "missing"
    if options.pull == "build" and svc.build is None:
        # `--pull build` builds what can be built; the rest follows its own policy
        policy = svc.pull_policy or "missing"
    return "missing" if policy == "if_not_present" else policy


def image_nodes(project: Project, observed: Observed, chosen: frozenset[str],
                options: UpOptions, nodes: list[PlanNode]) -> dict[str, list[str]]:
    """Build and pull nodes; service -> ids of the image nodes its containers need.

    A service with `build:` is built when its image is missing, with `--build` or
    `--pull build`, or with `pull_policy: build`; never with `--no-build` (then a missing
    image is an error). It is
    pulled instead only when it names an `image:` and the policy is `always` (a derived
    `<project>-<service>` name is never looked for in a registry). Other services pull per
    `--pull` or their `pull_policy` (missing, if_not_present, always, never; daily and
    weekly count as missing); one whose image another service builds waits for that build.
    """
    out: dict[str, list[str]] = {}
    built: dict[str, str] = {}   # image -> the node that builds it
    for name in sorted(chosen):
        svc = project.services[name]
        if svc.build is None or options.no_build:
            continue
        image = t.default_image(project, svc)
        present = image in observed.images
        policy = _policy(svc, options)
        if options.build:
            reason = "--build"
        elif options.pull == "build":
            reason = "--pull build"
        elif svc.pull_policy == "build" and options.pull is None:
            reason = "pull_policy build"
        elif not present and not (svc.image and policy == "always"):
            reason = "missing"
        else:
            continue
        node = PlanNode("image", "build", image, name, reason=reason)
        nodes.append(node)
        built.setdefault(image, node.id)
        out[name] = [built[image]]
    for name in sorted(chosen):
        svc = project.services[name]
        if name in out:
            continue
        image = t.default_image(project, svc)
        if image in built:
            out[name] = [built[image]]
            continue
        present = image in observed.images
        policy = _policy(svc, options)
        if svc.build is not None and options.no_build and not present:
            raise NotFound(f'service "{name}": image "{image}" is not present and --no-build '
                           f"was given (build it first: shipyard build {name})")
        if svc.build is not None and not svc.image:
            continue  # present: a derived name is never pulled
        if not svc.image:
            raise InvalidArgument(f'service "{name}" has neither an image nor a build '
                                  "section")
        if policy == "always" or (policy in ("missing", "daily", "weekly") and not present):
            node = PlanNode("image", "pull", image, name,
                            reason="" if policy == "always" else "missing")
        elif present:
            continue
        elif policy in ("never", "build"):
            what = "it has no build section" if policy == "build" else "pull_policy is never"
            raise NotFound(f'service "{name}": image "{image}" is not present and {what} '
                           "(pull or build it first)")
        else:
            raise Unavailable(f'service "{name}": unknown pull_policy "{policy}"')
        nodes.append(node)
        out[name] = [node.id]
    return out


def build_plan(project: Project, services: tuple[str, ...] = ()) -> Plan:
    """`shipyard build`: one `image build` node per service (of `services`, else all) that
    has a build section; services sharing an image build it once."""
    nodes = [PlanNode("image", "build", t.default_image(project, svc), name)
             for name, svc in sorted(project.services.items())
             if svc.build is not None and (not services or name in services)]
    return ordered(project.name, nodes)
