#!/usr/bin/env python3
"""Fail CI when pytest ran nothing, or when kernel tests skipped.

CI runs as root on a kernel with everything netmon needs, so a kernel test
that skips there (no root, no bcc, no headers, no tracefs...) means the setup
is broken, not that the test does not apply. With KERNEL_TESTS (the number
collected from tests/kernel), fewer kernel test cases in the report than that
fail too: deselecting them is as bad as skipping them.

Usage: check_junit.py JUNIT_XML [KERNEL_TESTS]
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

# A skip whose reason mentions one of these is about the environment.
ENVIRONMENT_SKIP = re.compile(r"root|bcc|bpf|kernel|tracefs|headers|CAP_|privileg", re.I)


def main(path: str, kernel_expected: int | None = None) -> int:
    cases = ET.parse(path).getroot().iter("testcase")
    total = ran = kernel_ran = 0
    bad: list[str] = []
    for case in cases:
        total += 1
        skipped = case.find("skipped")
        kernel_test = (case.get("classname") or "").startswith("tests.kernel")
        if skipped is None:
            ran += 1
            kernel_ran += kernel_test
            continue
        name = f"{case.get('classname')}::{case.get('name')}"
        reason = skipped.get("message", "")
        if kernel_test or ENVIRONMENT_SKIP.search(reason):
            bad.append(f"{name}: {reason}")
        else:
            print(f"check_junit: skipped (allowed): {name}: {reason}")
    print(f"check_junit: {total} tests, {ran} ran, {total - ran} skipped")
    if ran == 0:
        print("check_junit: FAIL: no test ran", file=sys.stderr)
        return 1
    if bad:
        print("check_junit: FAIL: kernel tests must run in CI, these skipped:", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    if kernel_expected is not None:
        print(f"check_junit: {kernel_ran} of {kernel_expected} kernel tests ran")
        if kernel_ran < kernel_expected:
            print("check_junit: FAIL: not every kernel test ran", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
