"""Cgroup v2 ids -> paths -> what people call them.

The kernel program records the cgroup v2 id of the process that created a
flow (`bpf_get_current_cgroup_id()`). On the cgroup2 file system a cgroup's
id is its directory's inode number, so walking the hierarchy (found in
/proc/mounts: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems)
maps ids to paths. Ids are never reused, so a name once found stays right.
A new id is first looked up through a process that has it (/proc/PID/cgroup
gives the path, the directory's inode confirms it); only ids that leaves
unnamed (the process exited, or moved) make netmon walk the tree, once per
call, and the walk is bounded. Ids a walk does not find are not looked for
again.

`service_name` turns a path into the short name shown in the SERVICE column:
a container ("docker:3f2a1b0c9d8e"), a Kubernetes pod ("pod:8d9e2f41"), a
systemd unit ("nginx.service", "session-3.scope"), else the last component.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from netmon.model import Cgroup

# Directories visited per walk at most (a host with thousands of containers
# has a few thousand cgroups; beyond this the rest stays unnamed).
MAX_WALK = 50_000
# Ids remembered at most, named or not (each entry is a short path).
MAX_CACHE = 100_000

# Container scopes: systemd driver `<runtime>-<64 hex>.scope`, cgroupfs driver
# `<runtime>/<64 hex>` (a bare 64-hex directory under a runtime's directory).
_SCOPE_RE = re.compile(
    r"^(?P<runtime>docker|cri-containerd|crio|libpod)-(?:conmon-)?(?P<id>[0-9a-f]{64})\.scope$"
)
_RUNTIME_DIRS = {"docker": "docker", "libpod_parent": "podman", "crio": "crio"}
_RUNTIME_NAMES = {"docker": "docker", "cri-containerd": "containerd", "crio": "crio",
                  "libpod": "podman"}  # fmt: skip
_HEX64_RE = re.compile(r"^(?:libpod-)?(?P<id>[0-9a-f]{64})$")
# Kubernetes pods: `pod<uid>` (cgroupfs driver) or `kubepods-<qos>-pod<uid>.slice`
# (systemd driver, where the uid's dashes are underscores).
_POD_RE = re.compile(r"(?:^|-)pod(?P<uid>[0-9a-fA-F][0-9a-fA-F_-]{7,})(?:\.slice)?$")
_UNIT_SUFFIXES = (".service", ".scope")
CONTAINER_ID_LEN = 12
POD_UID_LEN = 8


def service_name(path: str) -> str | None:
    """The service or container a cgroup path stands for; None for the root.

    >>> service_name("/system.slice/nginx.service")
    'nginx.service'
    >>> service_name("/system.slice/docker-" + "ab" * 32 + ".scope")
    'docker:abababababab'
    """
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if any(p.startswith("kubepods") for p in parts):
        for part in parts:
            pod = _POD_RE.search(part)
            if pod:
                uid = pod["uid"].replace("_", "-")
                return f"pod:{uid[:POD_UID_LEN]}"
    for i, part in enumerate(parts):
        scope = _SCOPE_RE.match(part)
        if scope:
            return f"{_RUNTIME_NAMES[scope['runtime']]}:{scope['id'][:CONTAINER_ID_LEN]}"
        bare = _HEX64_RE.match(part)
        if bare and i and parts[i - 1] in _RUNTIME_DIRS:
            return f"{_RUNTIME_DIRS[parts[i - 1]]}:{bare['id'][:CONTAINER_ID_LEN]}"
    for part in reversed(parts):
        if part.endswith(_UNIT_SUFFIXES):
            return part
    return parts[-1]


class CgroupNames:
    """Names of cgroup ids, from the cgroup2 hierarchy mounted at `root`
    (None: no cgroup v2 here, every id is unknown)."""

    def __init__(
        self,
        root: Path | None,
        *,
        max_walk: int = MAX_WALK,
        proc: Path = Path("/proc"),
    ) -> None:
        self.root = root
        self.max_walk = max_walk
        self.proc = proc
        self._known: dict[int, Cgroup | None] = {}  # None: looked for, not found
        self.walks = 0  # how many times the tree was walked

    def names(self, ids: Iterable[int], pids: Mapping[int, int] | None = None) -> dict[int, Cgroup]:
        """The Cgroup of each id that can be named. `pids` gives, for some
        ids, a process that has it. Ids that are still unknown then cause one
        walk of the tree; those it does not find (a cgroup removed since) are
        remembered as unknown."""
        wanted = [i for i in ids if i]
        if self.root is not None:
            unknown = [i for i in wanted if i not in self._known]
            for i in unknown:
                pid = (pids or {}).get(i)
                if pid is not None:
                    self._from_proc(i, pid)
            unknown = [i for i in unknown if i not in self._known]
            if unknown:
                self._walk(set(unknown))
        out: dict[int, Cgroup] = {}
        for i in wanted:
            cgroup = self._known.get(i)
            if cgroup is not None:
                out[i] = cgroup
        return out

    def _from_proc(self, cgroup_id: int, pid: int) -> None:
        """Name `cgroup_id` from the cgroup v2 line of /proc/PID/cgroup, if
        that directory is the one with this id (the process may have moved)."""
        assert self.root is not None
        try:
            text = (self.proc / str(pid) / "cgroup").read_text()
        except OSError:  # exited
            return
        for line in text.splitlines():
            if not line.startswith("0::/"):
                continue
            path = line[3:]
            if ".." in path.split("/"):  # outside this cgroup namespace: not under the mount
                return
            with contextlib.suppress(OSError):
                if os.stat(self.root / path.lstrip("/")).st_ino == cgroup_id:
                    self._remember({cgroup_id: Cgroup(path, service_name(path))})
            return

    def _remember(self, found: Mapping[int, Cgroup | None]) -> None:
        if len(self._known) > MAX_CACHE:
            self._known.clear()
        self._known.update(found)

    def _walk(self, wanted: set[int]) -> None:
        assert self.root is not None
        found: dict[int, Cgroup | None] = {}
        with contextlib.suppress(OSError):
            found[os.stat(self.root).st_ino] = Cgroup("/", None)
        stack = [(str(self.root), "")]
        visited = 0
        while stack and visited < self.max_walk:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:  # removed meanwhile, or not readable
                continue
            for entry in entries:
                if visited >= self.max_walk:
                    break
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    inode = entry.inode()
                except OSError:
                    continue
                visited += 1
                path = f"{rel}/{entry.name}"
                found[inode] = Cgroup(path, service_name(path))
                stack.append((entry.path, path))
        self.walks += 1
        for i in wanted - found.keys():
            found[i] = None
        self._remember(found)
