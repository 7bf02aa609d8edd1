"""Cgroup v2 ids -> paths -> what people call them.

The kernel program records the cgroup v2 id of the process that created a
flow (`bpf_get_current_cgroup_id()`). On the cgroup2 file system a cgroup's
id is its directory's inode number, so walking the hierarchy (found in
/proc/mounts: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems)
maps ids to paths. Ids are never reused, so a name once found stays right;
the tree is walked again only when an id netmon has not seen appears, at most
once per call, and the walk is bounded.

`service_name` turns a path into the short name shown in the SERVICE column:
a container ("docker:3f2a1b0c9d8e"), a Kubernetes pod ("pod:8d9e2f41"), a
systemd unit ("nginx.service", "session-3.scope"), else the last component.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
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

    def __init__(self, root: Path | None, *, max_walk: int = MAX_WALK) -> None:
        self.root = root
        self.max_walk = max_walk
        self._known: dict[int, Cgroup | None] = {}  # None: looked for, not found
        self.walks = 0  # how many times the tree was walked

    def names(self, ids: Iterable[int]) -> dict[int, Cgroup]:
        """The Cgroup of each id that can be named. Ids not seen before cause
        one walk of the tree (per call); those still not found (a cgroup
        removed since) are remembered as unknown."""
        wanted = [i for i in ids if i]
        if self.root is not None and any(i not in self._known for i in wanted):
            self._walk(set(wanted))
        out: dict[int, Cgroup] = {}
        for i in wanted:
            cgroup = self._known.get(i)
            if cgroup is not None:
                out[i] = cgroup
        return out

    def _walk(self, wanted: set[int]) -> None:
        assert self.root is not None
        if len(self._known) > MAX_CACHE:
            self._known.clear()
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
        self._known.update(found)
        for i in wanted - found.keys():
            self._known.setdefault(i, None)
