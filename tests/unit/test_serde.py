"""engine.serde: requests survive the store's JSON round trip exactly, old records (missing
keys) take the defaults, and optionals, unions, tuples and mappings come back typed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.requests import CreateRequest, MountRequest, NetworkAttachment, PortBinding
from engine.serde import from_dict, to_dict
from engine.spec import (
    ContainerConfig,
    Healthcheck,
    Mount,
    Resources,
    RestartPolicy,
    Ulimit,
)


def full_request() -> CreateRequest:
    config = ContainerConfig(
        id="abc", image="busybox", image_id="sha256:x", entrypoint=("sh",), cmd=None,
        env={"A": "b"}, group_add=("1",), labels={"l": "v"}, ulimits=(Ulimit("nofile", 1, 2),),
        resources=Resources(memory=5, cpus=0.5), mounts=(Mount("/x", "bind", "/y", ("ro",)),),
        stop_timeout=3.5, restart=RestartPolicy("always", 0),
        healthcheck=Healthcheck(("CMD", "true"), 1.0), network="host",
        namespaces={"pid": "host"})
    return CreateRequest(
        image="busybox", config=config, name="n", labels={"a": "b"},
        networks=(NetworkAttachment("net", ("a",), "10.0.0.2", None, 1, (("c", "d"),)),),
        ports=(PortBinding(80, "tcp", "", 8080),),
        mounts=(MountRequest("volume", "/data", "v", volume_labels={"x": "y"}),),
        extra_hosts=(("h", "1.2.3.4"),))


def through_json(value: object) -> object:
    return json.loads(json.dumps(to_dict(value)))


def test_a_full_request_round_trips_through_json() -> None:
    request = full_request()
    back = from_dict(CreateRequest, through_json(request))
    assert back == request
    assert isinstance(back.networks[0].links[0], tuple)  # JSON lists become tuples again
    assert isinstance(back.config.healthcheck, Healthcheck)
    assert back.config.cmd is None and back.config.stop_timeout == 3.5


def test_to_dict_writes_plain_json_types() -> None:
    data = to_dict(full_request())
    assert data["config"]["ulimits"] == [{"name": "nofile", "soft": 1, "hard": 2}]
    assert data["networks"][0]["links"] == [["c", "d"]]
    assert data["config"]["healthcheck"]["test"] == ["CMD", "true"]
    assert data["mounts"][0]["volume_labels"] == {"x": "y"}
    assert to_dict(CreateRequest) is CreateRequest  # a class is a value, not a record


def test_keys_an_old_record_lacks_take_the_defaults_and_unknown_keys_are_ignored() -> None:
    data = through_json(CreateRequest(image="i", config=ContainerConfig(id="z")))
    assert isinstance(data, dict)
    del data["networks"], data["config"]["healthcheck"], data["config"]["resources"]
    data["config"]["from_the_future"] = 1
    back = from_dict(CreateRequest, data)
    assert back == CreateRequest(image="i", config=ContainerConfig(id="z"))


@dataclass(frozen=True)
class Leaf:
    name: str
    size: int = 0


@dataclass(frozen=True)
class Tree:
    leaf: Leaf | None = None
    either: Leaf | str | None = None
    pairs: tuple[tuple[str, int], ...] = ()
    fixed: tuple[str, Leaf] | None = None
    items: list[Leaf] = field(default_factory=list)
    by_name: Mapping[str, Leaf] = field(default_factory=dict)
    loose: dict = field(default_factory=dict)


def test_unions_tuples_lists_and_mappings_come_back_typed() -> None:
    tree = Tree(leaf=Leaf("a", 1), either=Leaf("b"), pairs=(("x", 1), ("y", 2)),
                fixed=("f", Leaf("c", 3)), items=[Leaf("d")], by_name={"e": Leaf("e", 5)},
                loose={"k": [1, 2]})
    assert from_dict(Tree, through_json(tree)) == tree
    assert from_dict(Tree, {"either": "plain"}).either == "plain"
    assert from_dict(Tree, {"leaf": None, "fixed": None}) == Tree()
