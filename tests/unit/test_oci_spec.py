"""Unit tests of libcontainerd.oci: the default spec, each option, and user resolution."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import libcontainerd.oci as oci
from libcontainerd.errors import Error, InvalidArgument, NotFound
from libcontainerd.oci import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH_ENV,
    Spec,
    apply_options,
    generate_spec,
    with_additional_gids,
    with_annotations,
    with_capabilities,
    with_cgroups_path,
    with_cpu_quota,
    with_cpu_shares,
    with_cwd,
    with_default_path_env,
    with_env,
    with_host_namespaces,
    with_hostname,
    with_image_config,
    with_linux_namespace,
    with_memory_limit,
    with_mounts,
    with_namespaces,
    with_pids_limit,
    with_privileged,
    with_process_args,
    with_readonly_rootfs,
    with_rootfs,
    with_tty,
    with_uid_gid,
    with_user,
    without_mounts,
)
from libcontainerd.oci.users import (
    GroupEntry,
    PasswdEntry,
    parse_group,
    parse_passwd,
    resolve_in_root,
    resolve_user,
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "broken:x:notanumber:1\n"
    "+nis::::::\n"
    "nobody:x:65534:65534::/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\nnogroup:x:65534:\n"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


def _namespaces(spec: Spec) -> list[str]:
    return [ns["type"] for ns in spec["linux"]["namespaces"]]


# ---------------------------------------------------------------------------- default spec


def test_default_spec_content() -> None:
    spec = generate_spec()
    assert spec["ociVersion"] == oci.OCI_VERSION
    process = spec["process"]
    assert process["terminal"] is False
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["args"] == []
    assert process["env"] == [DEFAULT_PATH_ENV]
    assert process["cwd"] == "/"
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    caps = process["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}
    for key in caps:
        assert caps[key] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert _namespaces(spec) == ["pid", "ipc", "uts", "mount", "network"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert "cgroupsPath" not in spec["linux"]


def test_default_mounts() -> None:
    mounts = {m["destination"]: m for m in generate_spec()["mounts"]}
    assert list(mounts) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/run",
    ]
    assert mounts["/proc"]["type"] == "proc"
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} <= set(
        mounts["/dev/pts"]["options"]
    )
    assert mounts["/dev/shm"]["options"] == [
        "nosuid",
        "noexec",
        "nodev",
        "mode=1777",
        "size=65536k",
    ]
    assert mounts["/dev/mqueue"]["type"] == "mqueue"
    assert "ro" in mounts["/sys"]["options"]
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert {"ro", "nosuid", "noexec", "nodev"} <= set(mounts["/sys/fs/cgroup"]["options"])


def test_cgroups_path_follows_namespace_and_id() -> None:
    assert generate_spec(container_id="web")["linux"]["cgroupsPath"] == "/default/web"
    spec = generate_spec(container_id="web", namespace="k8s.io")
    assert spec["linux"]["cgroupsPath"] == "/k8s.io/web"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "-x", "x" * 77, "sp ace"])
def test_bad_container_id_or_namespace(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        generate_spec(container_id=bad)
    with pytest.raises(InvalidArgument):
        generate_spec(container_id="ok", namespace=bad)


def test_generate_spec_returns_fresh_objects() -> None:
    a = generate_spec()
    b = generate_spec()
    a["process"]["env"].append("X=1")
    a["mounts"][0]["options"].append("ro")
    a["process"]["capabilities"]["bounding"].clear()
    assert b == generate_spec()
    assert generate_spec()["process"]["env"] == [DEFAULT_PATH_ENV]


def test_spec_is_json_serialisable(rootfs: Path) -> None:
    spec = generate_spec(
        with_process_args("sh", "-c", "true"),
        with_env({"A": "1"}),
        with_user("app", rootfs=rootfs),
        with_memory_limit(64 << 20),
        with_cpu_shares(512),
        with_cpu_quota(50_000, 100_000),
        with_pids_limit(10),
        with_annotations({"k": "v"}),
        with_mounts([{"destination": "/data", "type": "bind", "source": "/tmp"}]),
        container_id="c1",
    )
    assert json.loads(json.dumps(spec)) == spec


def test_public_names() -> None:
    for name in oci.__all__:
        assert hasattr(oci, name), name
    for required in (
        "Spec",
        "SpecOpt",
        "generate_spec",
        "apply_options",
        "with_process_args",
        "with_env",
        "with_cwd",
        "with_tty",
        "with_hostname",
        "with_user",
        "with_uid_gid",
        "with_rootfs",
        "with_readonly_rootfs",
        "with_mounts",
        "with_memory_limit",
        "with_cpu_shares",
        "with_cpu_quota",
        "with_pids_limit",
        "with_image_config",
        "with_namespaces",
        "with_host_namespaces",
        "with_annotations",
        "with_linux_namespace",
        "with_capabilities",
        "with_default_path_env",
    ):
        assert required in oci.__all__


# ---------------------------------------------------------------------------- apply semantics


def test_apply_options_mutates_in_place_and_returns_same_object() -> None:
    spec = generate_spec()
    result = apply_options(spec, with_hostname("h"))
    assert result is spec
    assert spec["hostname"] == "h"


def test_options_apply_in_order() -> None:
    spec = generate_spec(with_cwd("/a"), with_cwd("/b"))
    assert spec["process"]["cwd"] == "/b"


def test_failing_option_leaves_spec_untouched() -> None:
    spec = generate_spec(container_id="x")
    before = copy.deepcopy(spec)

    def boom(s: Spec) -> None:
        s["process"]["args"] = ["partial"]
        raise NotFound("nothing here")

    with pytest.raises(NotFound):
        apply_options(spec, with_hostname("changed"), boom)
    assert spec == before


def test_failing_user_lookup_leaves_spec_untouched(rootfs: Path) -> None:
    spec = generate_spec()
    before = copy.deepcopy(spec)
    with pytest.raises(NotFound):
        apply_options(spec, with_env({"A": "1"}), with_user("ghost", rootfs=rootfs))
    assert spec == before


def test_foreign_exception_in_option_becomes_invalid_argument() -> None:
    spec = generate_spec()
    before = copy.deepcopy(spec)

    def buggy(s: Spec) -> None:
        s["hostname"] = "x"
        raise KeyError("missing")

    with pytest.raises(InvalidArgument, match="buggy"):
        apply_options(spec, buggy)
    assert spec == before


def test_non_atomic_apply_works_on_the_callers_objects() -> None:
    """``atomic=False`` edits the caller's nested objects instead of a copy."""
    spec = generate_spec()
    process = spec["process"]
    apply_options(spec, with_cwd("/srv"), atomic=False)
    assert spec["process"] is process and process["cwd"] == "/srv"
    apply_options(spec, with_cwd("/opt"))
    assert spec["process"] is not process  # the atomic path swapped in its copy
    assert spec["process"]["cwd"] == "/opt"


def test_non_atomic_apply_still_types_foreign_errors() -> None:
    def buggy(s: Spec) -> None:
        raise KeyError("missing")

    with pytest.raises(InvalidArgument, match="buggy"):
        apply_options(generate_spec(), buggy, atomic=False)


def test_generated_specs_share_nothing() -> None:
    """Specs are built without a defensive copy, so each must be made of new objects."""
    first, second = generate_spec(), generate_spec()

    def ids(value: object) -> set[int]:
        found = {id(value)} if isinstance(value, (dict, list)) else set()
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, (dict, list)):
            for child in children:
                found |= ids(child)
        return found

    assert not ids(first) & ids(second)
    first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    first["mounts"][0]["options"].append("ro")
    assert second == generate_spec()


def test_non_callable_option_rejected() -> None:
    with pytest.raises(InvalidArgument, match="not callable"):
        generate_spec("not an option")  # type: ignore[arg-type]


def test_apply_options_needs_dict() -> None:
    with pytest.raises(InvalidArgument):
        apply_options([], with_hostname("x"))  # type: ignore[arg-type]


def test_options_work_on_an_empty_spec() -> None:
    spec: Spec = {}
    apply_options(
        spec,
        with_process_args("true"),
        with_env(["A=1"]),
        with_memory_limit(8 << 20),
        with_cpu_shares(100),
        with_host_namespaces("network"),
        with_linux_namespace("network", "/proc/1/ns/net"),
        with_readonly_rootfs(),
        with_uid_gid(1, 2),
    )
    assert spec["process"]["args"] == ["true"]
    assert spec["linux"]["resources"]["memory"]["limit"] == 8 << 20
    assert spec["linux"]["namespaces"] == [{"type": "network", "path": "/proc/1/ns/net"}]
    assert spec["root"]["readonly"] is True


# ---------------------------------------------------------------------------- process options


def test_with_process_args() -> None:
    spec = generate_spec(with_process_args("sh", "-c", "echo hi"))
    assert spec["process"]["args"] == ["sh", "-c", "echo hi"]


@pytest.mark.parametrize("args", [(), ("",), ("a\0b",), (1,)])
def test_with_process_args_rejects(args: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidArgument):
        with_process_args(*args)


def test_with_env_sequence_replaces_appends_and_unsets() -> None:
    spec = generate_spec(
        with_env(["A=1", "B=2"]),
        with_env(["A=3", "C=", "B"]),
    )
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV, "A=3", "C="]


def test_with_env_mapping() -> None:
    spec = generate_spec(with_env({"PATH": "/bin", "X": "a=b"}))
    assert spec["process"]["env"] == ["PATH=/bin", "X=a=b"]


@pytest.mark.parametrize(
    "env", ["A=1", ["=x"], [""], [1], {"A=B": "x"}, {"": "x"}, {"A": 1}, {"A": "x\0"}]
)
def test_with_env_rejects(env: Any) -> None:
    with pytest.raises(InvalidArgument):
        with_env(env)


def test_with_default_path_env() -> None:
    spec = generate_spec(with_env({"PATH": "/nowhere"}), with_default_path_env())
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV]


def test_with_cwd() -> None:
    assert generate_spec(with_cwd("/srv"))["process"]["cwd"] == "/srv"
    for bad in ("relative", "", 5):
        with pytest.raises(InvalidArgument):
            with_cwd(bad)  # type: ignore[arg-type]


def test_with_tty() -> None:
    spec = generate_spec(with_tty(), with_tty())
    assert spec["process"]["terminal"] is True
    assert spec["process"]["env"].count("TERM=xterm") == 1
    spec = generate_spec(with_tty(), with_tty(False))
    assert spec["process"]["terminal"] is False
    with pytest.raises(InvalidArgument):
        with_tty("yes")  # type: ignore[arg-type]


def test_with_hostname() -> None:
    assert generate_spec(with_hostname("box"))["hostname"] == "box"
    for bad in ("", "a b", "x" * 65, "a/b", None):
        with pytest.raises(InvalidArgument):
            with_hostname(bad)  # type: ignore[arg-type]


def test_with_capabilities_normalises_and_dedupes() -> None:
    spec = generate_spec(with_capabilities(["net_admin", "CAP_NET_ADMIN", "cap_kill"]))
    caps = spec["process"]["capabilities"]
    for key in ("bounding", "effective", "permitted"):
        assert caps[key] == ["CAP_NET_ADMIN", "CAP_KILL"]
    assert generate_spec(with_capabilities([]))["process"]["capabilities"]["bounding"] == []
    with pytest.raises(InvalidArgument, match="unknown capability"):
        with_capabilities(["CAP_FLY"])
    with pytest.raises(InvalidArgument):
        with_capabilities("CAP_KILL")


def test_with_privileged() -> None:
    spec = generate_spec(with_privileged())
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["linux"]["maskedPaths"] == []
    assert spec["linux"]["readonlyPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


# ---------------------------------------------------------------------------- users


def test_with_user_numeric_without_rootfs() -> None:
    spec = generate_spec(with_user(1000))
    assert spec["process"]["user"] == {"uid": 1000, "gid": 0, "additionalGids": [0]}
    spec = generate_spec(with_user("1000:1001"))
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [1001]}


def test_with_user_name_resolves_through_rootfs(rootfs: Path) -> None:
    spec = generate_spec(with_user("app", rootfs=rootfs))
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 29]}


def test_with_user_numeric_uses_passwd_gid(rootfs: Path) -> None:
    user = generate_spec(with_user("65534", rootfs=rootfs))["process"]["user"]
    assert (user["uid"], user["gid"]) == (65534, 65534)
    # A uid that is not in passwd still works, with gid 0 (containerd's rule).
    user = generate_spec(with_user(4242, rootfs=rootfs))["process"]["user"]
    assert (user["uid"], user["gid"]) == (4242, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app:wheel", (1000, 10)),
        ("0:audio", (0, 29)),
        ("app:7", (1000, 7)),
        ("nobody:nogroup", (65534, 65534)),
    ],
)
def test_with_user_name_and_group(rootfs: Path, text: str, expected: tuple[int, int]) -> None:
    user = generate_spec(with_user(text, rootfs=rootfs))["process"]["user"]
    assert (user["uid"], user["gid"]) == expected
    assert user["additionalGids"] == [expected[1]]


def test_with_user_defaults_to_absolute_root_path(rootfs: Path) -> None:
    spec = generate_spec(with_rootfs(rootfs), with_user("app"))
    assert spec["process"]["user"]["uid"] == 1000


def test_with_user_name_without_rootfs() -> None:
    with pytest.raises(InvalidArgument, match="rootfs"):
        generate_spec(with_user("app"))


def test_with_user_unknown_names(rootfs: Path) -> None:
    with pytest.raises(NotFound, match="ghost"):
        generate_spec(with_user("ghost", rootfs=rootfs))
    with pytest.raises(NotFound, match="nogroup2"):
        generate_spec(with_user("app:nogroup2", rootfs=rootfs))
    with pytest.raises(NotFound):
        generate_spec(with_user("app", rootfs=rootfs / "missing"))


@pytest.mark.parametrize("bad", ["", ":", "a:", ":b", "a:b:c", -1, 2**31, True, 1.5, "9" * 12])
def test_with_user_rejects(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        generate_spec(with_user(bad))


def test_with_uid_gid_and_additional_gids() -> None:
    spec = generate_spec(with_uid_gid(5, 6), with_additional_gids(7, 6, 8))
    assert spec["process"]["user"] == {"uid": 5, "gid": 6, "additionalGids": [6, 7, 8]}
    with pytest.raises(InvalidArgument):
        with_uid_gid(-1, 0)
    with pytest.raises(InvalidArgument):
        with_uid_gid(0, 2**31)
    with pytest.raises(InvalidArgument):
        with_additional_gids(-5)


def test_passwd_lookup_stays_inside_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "real").write_text("app:x:1000:1000::/:/bin/sh\n")
    # An absolute symlink means the rootfs's /real, never the host's path.
    (root / "etc" / "passwd").symlink_to("/real")
    assert resolve_user("app", root).uid == 1000
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../outside/etc/passwd")
    with pytest.raises(NotFound):
        resolve_user("evil", root)


def test_resolve_in_root_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        resolve_in_root(tmp_path, "/a/x")


def test_parse_passwd_skips_malformed_lines() -> None:
    assert [e.name for e in parse_passwd(PASSWD)] == ["root", "app", "nobody"]
    assert parse_group(GROUP)[2] == GroupEntry(name="wheel", gid=10, members=("app", "other"))


_names = st.from_regex(r"\A[a-z_][a-z0-9_.-]{0,15}\Z")
_ids = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=300)
@given(st.lists(st.builds(PasswdEntry, name=_names, uid=_ids, gid=_ids), max_size=8))
def test_passwd_round_trip(entries: list[PasswdEntry]) -> None:
    text = "\n".join(e.to_line() for e in entries) + "\n"
    assert parse_passwd(text) == entries


@settings(max_examples=300)
@given(
    st.lists(
        st.builds(GroupEntry, name=_names, gid=_ids, members=st.lists(_names, max_size=4)),
        max_size=8,
    )
)
def test_group_round_trip(entries: list[GroupEntry]) -> None:
    text = "\n".join(e.to_line() for e in entries)
    assert parse_group(text) == entries


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_parsers_never_raise_on_garbage(text: str) -> None:
    for entry in parse_passwd(text):
        assert 0 <= entry.uid <= 2**31 - 1
    for group in parse_group(text):
        assert 0 <= group.gid <= 2**31 - 1


_env_keys = st.sampled_from(["A", "B", "PATH", "HOME", "X_1"])
_env_entries = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _env_keys, st.text("abc=/:", max_size=5)),
    _env_keys,
)


@settings(max_examples=300)
@given(st.lists(_env_entries, max_size=8), st.lists(_env_entries, max_size=8))
def test_with_env_matches_a_dict_model(first: list[str], second: list[str]) -> None:
    spec = generate_spec(with_env(first), with_env(second))
    model: dict[str, str] = {"PATH": DEFAULT_PATH_ENV.split("=", 1)[1]}
    for entry in first + second:
        key, sep, value = entry.partition("=")
        if sep:
            model[key] = value
        else:
            model.pop(key, None)
    env = spec["process"]["env"]
    keys = [e.split("=", 1)[0] for e in env]
    assert len(keys) == len(set(keys))
    assert dict(e.split("=", 1) for e in env) == model


# ---------------------------------------------------------------------------- root and mounts


def test_with_rootfs_and_readonly(tmp_path: Path) -> None:
    spec = generate_spec(with_rootfs(tmp_path), with_readonly_rootfs())
    assert spec["root"] == {"path": str(tmp_path), "readonly": True}
    assert generate_spec(with_readonly_rootfs(False))["root"]["readonly"] is False
    with pytest.raises(InvalidArgument):
        with_rootfs("")
    with pytest.raises(InvalidArgument):
        with_readonly_rootfs(1)  # type: ignore[arg-type]


class _FakeMount:
    """Stands in for a Mount value type: anything with to_oci() is accepted."""

    def to_oci(self) -> dict[str, Any]:
        return {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}


def test_with_mounts_accepts_dicts_and_mount_objects() -> None:
    spec = generate_spec(
        with_mounts([{"destination": "/data", "type": "bind", "source": "/srv", "options": []}]),
        with_mounts([_FakeMount()]),
    )
    assert spec["mounts"][-2] == {
        "destination": "/data",
        "type": "bind",
        "source": "/srv",
        "options": [],
    }
    assert spec["mounts"][-1]["destination"] == "/m"


def test_with_mounts_accepts_the_project_mount_type() -> None:
    mount_module = pytest.importorskip("libcontainerd.types.mount")
    mount = mount_module.Mount(type="tmpfs", source="tmpfs", target="/scratch", options=("rw",))
    spec = generate_spec(with_mounts([mount]))
    assert spec["mounts"][-1]["destination"] == "/scratch"
    assert spec["mounts"][-1]["type"] == "tmpfs"


def test_with_mounts_replaces_same_destination() -> None:
    bigger = {"destination": "/dev/shm/", "type": "tmpfs", "source": "shm", "options": ["size=1g"]}
    spec = generate_spec(with_mounts([bigger]))
    shm = [m for m in spec["mounts"] if m["destination"].rstrip("/") == "/dev/shm"]
    assert len(shm) == 1
    assert shm[0]["options"] == ["size=1g"]


@pytest.mark.parametrize(
    "mounts",
    [
        {"destination": "/x"},
        [{"destination": "relative"}],
        [{"type": "tmpfs"}],
        [{"destination": "/x", "options": "ro"}],
        [{"destination": "/x", "bogus": 1}],
        ["/x"],
    ],
)
def test_with_mounts_rejects(mounts: Any) -> None:
    with pytest.raises(InvalidArgument):
        with_mounts(mounts)


def test_without_mounts() -> None:
    spec = generate_spec(without_mounts("/run", "/sys/fs/cgroup/", "/absent"))
    dests = [m["destination"] for m in spec["mounts"]]
    assert "/run" not in dests
    assert "/sys/fs/cgroup" not in dests
    assert "/proc" in dests


# ---------------------------------------------------------------------------- resources


def test_resource_options() -> None:
    spec = generate_spec(
        with_memory_limit(64 << 20),
        with_cpu_shares(512),
        with_cpu_quota(50_000, 200_000),
        with_pids_limit(20),
    )
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20}
    assert resources["cpu"] == {"shares": 512, "quota": 50_000, "period": 200_000}
    assert resources["pids"] == {"limit": 20}
    assert resources["devices"] == [{"allow": False, "access": "rwm"}]
    unlimited = generate_spec(with_cpu_quota(-1), with_pids_limit(-1))["linux"]["resources"]
    assert unlimited["cpu"] == {"quota": -1, "period": 100_000}
    assert unlimited["pids"] == {"limit": -1}


@pytest.mark.parametrize(
    "make",
    [
        lambda: with_memory_limit(0),
        lambda: with_memory_limit(1024),
        lambda: with_memory_limit(True),
        lambda: with_memory_limit(1.5e9),  # type: ignore[arg-type]
        lambda: with_cpu_shares(1),
        lambda: with_cpu_shares(300_000),
        lambda: with_cpu_quota(500),
        lambda: with_cpu_quota(0),
        lambda: with_cpu_quota(50_000, 10),
        lambda: with_cpu_quota(50_000, 2_000_000),
        lambda: with_pids_limit(0),
        lambda: with_pids_limit(-2),
        lambda: with_cgroups_path("relative/path"),
    ],
)
def test_resource_options_reject(make: Any) -> None:
    with pytest.raises(InvalidArgument):
        make()


def test_with_cgroups_path() -> None:
    spec = generate_spec(with_cgroups_path("/mine/c1"), container_id="c1")
    assert spec["linux"]["cgroupsPath"] == "/mine/c1"


# ---------------------------------------------------------------------------- namespaces


def test_with_host_namespaces_and_namespaces() -> None:
    spec = generate_spec(with_host_namespaces("network", "ipc"))
    assert _namespaces(spec) == ["pid", "uts", "mount"]
    spec = generate_spec(with_host_namespaces("net"), with_namespaces("network", "cgroup", "pid"))
    assert _namespaces(spec) == ["pid", "ipc", "uts", "mount", "network", "cgroup"]


def test_with_linux_namespace_replaces_or_adds() -> None:
    spec = generate_spec(
        with_linux_namespace("network", "/proc/42/ns/net"),
        with_linux_namespace("user", Path("/proc/42/ns/user")),
    )
    nss = spec["linux"]["namespaces"]
    assert {"type": "network", "path": "/proc/42/ns/net"} in nss
    assert nss[-1] == {"type": "user", "path": "/proc/42/ns/user"}
    assert _namespaces(spec).count("network") == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: with_namespaces("bogus"),
        lambda: with_host_namespaces("NET"),
        lambda: with_linux_namespace("network", "relative"),
        lambda: with_linux_namespace("time", "/proc/1/ns/time"),
    ],
)
def test_namespace_options_reject(make: Any) -> None:
    with pytest.raises(InvalidArgument):
        make()


# ---------------------------------------------------------------------------- annotations


def test_with_annotations() -> None:
    spec = generate_spec(with_annotations({"a": "1"}), with_annotations({"a": "2", "b": ""}))
    assert spec["annotations"] == {"a": "2", "b": ""}
    with pytest.raises(InvalidArgument):
        with_annotations({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        with_annotations([("a", "b")])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- image config

IMAGE = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hi"],
        "Env": ["PATH=/custom/bin:/bin", "MODE=image"],
        "WorkingDir": "/srv",
        "User": "app",
    },
    "rootfs": {"type": "layers", "diff_ids": []},
}


def test_with_image_config_full_document(rootfs: Path) -> None:
    spec = generate_spec(with_image_config(IMAGE, rootfs=rootfs), with_env({"MODE": "override"}))
    process = spec["process"]
    assert process["args"] == ["/bin/sh", "-c", "echo hi"]
    assert process["env"] == ["PATH=/custom/bin:/bin", "MODE=override"]
    assert process["cwd"] == "/srv"
    assert process["user"]["uid"] == 1000
    assert process["user"]["gid"] == 1000


def test_with_image_config_inner_object_and_args_override() -> None:
    inner = {"Cmd": ["sleep", "1"], "Env": ["A=1"]}
    spec = generate_spec(with_cwd("/x"), with_image_config(inner))
    assert spec["process"]["args"] == ["sleep", "1"]
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV, "A=1"]
    assert spec["process"]["cwd"] == "/"
    assert spec["process"]["user"] == {"uid": 0, "gid": 0}
    spec = generate_spec(with_image_config({"Entrypoint": ["env"], "Cmd": ["-0"]}, args=["-i"]))
    assert spec["process"]["args"] == ["env", "-i"]


def test_with_image_config_empty_keeps_args() -> None:
    spec = generate_spec(with_process_args("true"), with_image_config({"config": None}))
    assert spec["process"]["args"] == ["true"]


def test_with_image_config_user_needs_rootfs() -> None:
    with pytest.raises(InvalidArgument, match="rootfs"):
        generate_spec(with_image_config(IMAGE))
    numeric = {"User": "1000:1000", "Cmd": ["id"]}
    assert generate_spec(with_image_config(numeric))["process"]["user"]["uid"] == 1000


@pytest.mark.parametrize(
    "config",
    [
        [],
        {"config": []},
        {"Cmd": "echo hi"},
        {"Entrypoint": [1]},
        {"Env": ["=x"]},
        {"Env": "A=1"},
        {"WorkingDir": "relative"},
        {"User": 5},
    ],
)
def test_with_image_config_rejects(config: Any) -> None:
    with pytest.raises(InvalidArgument):
        with_image_config(config)


def test_every_error_is_typed() -> None:
    with pytest.raises(Error):
        with_memory_limit(-1)
    assert issubclass(InvalidArgument, ValueError)
