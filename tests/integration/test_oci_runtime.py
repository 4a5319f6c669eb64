"""Real containers, run by runc and crun from bundles built with libcontainerd.oci specs.

Every test builds a spec with options, runs it, and checks the option's effect from inside
the container (what the process sees), not just the JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH_ENV,
    SpecOpt,
    generate_spec,
    with_capabilities,
    with_cpu_quota,
    with_cpu_shares,
    with_cwd,
    with_env,
    with_host_namespaces,
    with_hostname,
    with_image_config,
    with_linux_namespace,
    with_memory_limit,
    with_mounts,
    with_pids_limit,
    with_process_args,
    with_readonly_rootfs,
    with_rootfs,
    with_uid_gid,
    with_user,
)
from libcontainerd.testing.host import (
    BundleResult,
    BundleRunner,
    cgroup_mode,
    ensure_crun_cgroup_layout,
    find_runtime,
    is_root,
    mounted_cgroup_controllers,
)

pytestmark = pytest.mark.runtime

# /etc/group with a supplementary group for "app", to see resolution reach the runtime.
GROUP = b"root:x:0:\napp:x:1000:\nstaff:x:2000:app\nnobody:x:65534:\n"

CGROUP_V2 = cgroup_mode() == "unified"


def run(
    runner: BundleRunner, *opts: SpecOpt, script: str | None = None, user: str | None = None
) -> BundleResult:
    """Run the default spec plus ``opts`` (then ``sh -c script`` and ``user``, resolved
    through the bundle's rootfs) in a fresh bundle."""
    bundle, container_id = runner.prepare(extra_files={"etc/group": GROUP})
    extra = [with_process_args("sh", "-c", script)] if script is not None else []
    if user is not None:
        extra.append(with_user(user, rootfs=bundle / "rootfs"))
    spec = generate_spec(*opts, *extra, container_id=container_id, namespace=runner.namespace)
    runner.write_spec(bundle, spec)
    return runner.run(bundle, container_id)


def ok(result: BundleResult) -> str:
    """The stdout of a run that must have succeeded (with its stderr in the failure)."""
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result.stdout


def test_default_spec_runs_as_root(oci_runtime: BundleRunner) -> None:
    out = ok(run(oci_runtime, script="id -u; id -g; pwd; echo $PATH"))
    assert out.split() == ["0", "0", "/", DEFAULT_PATH_ENV.split("=", 1)[1]]


def test_exit_code_propagates(oci_runtime: BundleRunner) -> None:
    assert run(oci_runtime, script="exit 3").exit_code == 3


def test_hostname(oci_runtime: BundleRunner) -> None:
    assert ok(run(oci_runtime, with_hostname("spec-box"), script="hostname")) == "spec-box\n"


def test_env(oci_runtime: BundleRunner) -> None:
    out = ok(run(oci_runtime, with_env({"GREETING": "hello world", "EMPTY": ""}), script="env"))
    lines = out.splitlines()
    assert "GREETING=hello world" in lines
    assert "EMPTY=" in lines
    assert DEFAULT_PATH_ENV in lines


def test_cwd(oci_runtime: BundleRunner) -> None:
    assert ok(run(oci_runtime, with_cwd("/tmp"), script="pwd")) == "/tmp\n"


def test_user_by_name_resolved_through_rootfs(oci_runtime: BundleRunner) -> None:
    out = ok(run(oci_runtime, script="id -u; id -g; id -G", user="app"))
    assert out.splitlines() == ["1000", "1000", "1000 2000"]


def test_numeric_uid_gid(oci_runtime: BundleRunner) -> None:
    out = ok(run(oci_runtime, with_uid_gid(65534, 2000), script="id -u; id -g"))
    assert out.split() == ["65534", "2000"]


def test_readonly_rootfs(oci_runtime: BundleRunner) -> None:
    result = run(oci_runtime, with_readonly_rootfs(), script="touch /x")
    assert result.exit_code != 0
    assert "Read-only file system" in result.stderr
    # /tmp is part of the rootfs too; the writable default lets the same command succeed.
    ok(run(oci_runtime, script="touch /x && test -f /x"))


def test_memory_limit(oci_runtime: BundleRunner) -> None:
    limit = 96 * 1024 * 1024
    path = (
        "/sys/fs/cgroup/memory.max" if CGROUP_V2 else "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    out = ok(run(oci_runtime, with_memory_limit(limit), script=f"cat {path}"))
    assert int(out) == limit


def test_pids_limit(oci_runtime: BundleRunner) -> None:
    path = "/sys/fs/cgroup/pids.max" if CGROUP_V2 else "/sys/fs/cgroup/pids/pids.max"
    assert ok(run(oci_runtime, with_pids_limit(17), script=f"cat {path}")) == "17\n"


def test_cpu_shares(oci_runtime: BundleRunner) -> None:
    shares = 512
    if CGROUP_V2:
        # Both runtimes map shares onto cpu.weight with the same linear formula.
        out = ok(run(oci_runtime, with_cpu_shares(shares), script="cat /sys/fs/cgroup/cpu.weight"))
        assert int(out) == 1 + ((shares - 2) * 9999) // 262142
    else:
        out = ok(
            run(oci_runtime, with_cpu_shares(shares), script="cat /sys/fs/cgroup/cpu/cpu.shares")
        )
        assert int(out) == shares


def test_cpu_quota(oci_runtime: BundleRunner) -> None:
    opt = with_cpu_quota(25_000, 50_000)
    if CGROUP_V2:
        assert ok(run(oci_runtime, opt, script="cat /sys/fs/cgroup/cpu.max")) == "25000 50000\n"
    else:
        script = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        assert ok(run(oci_runtime, opt, script=script)).split() == ["25000", "50000"]


def test_image_config(oci_runtime: BundleRunner) -> None:
    image = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ['echo "$MODE $EXTRA"; pwd'],
            "Env": ["PATH=/bin", "MODE=image", "EXTRA=from-image"],
            "WorkingDir": "/home/app",
        },
    }
    out = ok(run(oci_runtime, with_image_config(image), with_env({"EXTRA": "overridden"})))
    assert out.splitlines() == ["image overridden", "/home/app"]


def test_image_config_user(oci_runtime: BundleRunner) -> None:
    image = {"config": {"User": "1000:1000", "Cmd": ["id", "-u"]}}
    assert ok(run(oci_runtime, with_image_config(image))) == "1000\n"


def test_capabilities(oci_runtime: BundleRunner) -> None:
    def mask(caps: tuple[str, ...] | list[str]) -> int:
        return sum(1 << ALL_CAPABILITIES.index(c) for c in caps)

    script = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    default = dict(line.split(":\t") for line in ok(run(oci_runtime, script=script)).splitlines())
    assert int(default["CapEff"], 16) == mask(DEFAULT_CAPABILITIES)
    assert default["NoNewPrivs"] == "1"
    out = ok(run(oci_runtime, with_capabilities(["CAP_KILL", "CAP_CHOWN"]), script=script))
    reduced = dict(line.split(":\t") for line in out.splitlines())
    assert int(reduced["CapEff"], 16) == mask(["CAP_KILL", "CAP_CHOWN"])


def test_host_network_namespace(oci_runtime: BundleRunner) -> None:
    host_net = os.readlink("/proc/self/ns/net")
    own = ok(run(oci_runtime, script="readlink /proc/self/ns/net")).strip()
    shared = ok(
        run(oci_runtime, with_host_namespaces("network"), script="readlink /proc/self/ns/net")
    ).strip()
    joined = ok(
        run(
            oci_runtime,
            with_linux_namespace("network", f"/proc/{os.getpid()}/ns/net"),
            script="readlink /proc/self/ns/net",
        )
    ).strip()
    assert own != host_net
    assert shared == host_net
    assert joined == host_net


def test_absolute_rootfs_path(oci_runtime: BundleRunner, tmp_path: Path) -> None:
    bundle, container_id = oci_runtime.prepare()
    elsewhere = tmp_path / "elsewhere-rootfs"
    (bundle / "rootfs").rename(elsewhere)
    (elsewhere / "marker").write_text("moved\n")
    spec = generate_spec(
        with_rootfs(elsewhere),
        with_process_args("cat", "/marker"),
        container_id=container_id,
        namespace=oci_runtime.namespace,
    )
    oci_runtime.write_spec(bundle, spec)
    assert ok(oci_runtime.run(bundle, container_id)) == "moved\n"


def test_bind_mount(oci_runtime: BundleRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("from the host\n")
    mount = {
        "destination": "/data",
        "type": "bind",
        "source": str(data),
        "options": ["rbind", "ro"],
    }
    result = run(oci_runtime, with_mounts([mount]), script="cat /data/hello.txt; touch /data/x")
    assert result.stdout == "from the host\n"
    assert result.exit_code != 0
    assert "Read-only file system" in result.stderr
    assert not (data / "x").exists()


def test_host_helpers(crun_cgroup_layout: str | None) -> None:
    if not is_root():
        pytest.skip("preparing the cgroup layout needs root")
    # The session fixture already did whatever was needed; a second call has nothing to do.
    assert ensure_crun_cgroup_layout() is None
    if cgroup_mode() == "hybrid" and find_runtime("crun") is not None:
        assert "hugetlb" in mounted_cgroup_controllers()
    runc = find_runtime("runc")
    assert runc is None or runc.is_absolute()
    assert find_runtime("no-such-runtime-here") is None
    assert find_runtime("/nonexistent/runc") is None
    with pytest.raises(InvalidArgument):
        find_runtime("")
