"""
``pii_filter`` against cpex-pii-filter (Rust) behind cpex's manager
===================================================================

The same ``tool_pre_invoke`` payload of prose with e-mails, phone numbers,
card numbers and addresses (``plugins.text_of``: a PII item every ~300
bytes) at 1 KB, 64 KB and 1 MB, through our ``pii_filter`` and cpex 0.1.4
with cpex-pii-filter 0.3.9, both redacting; how they are timed and checked
is ``versus_cpex.py``'s. Target: cpex's time over ours at least 1.0x at every
size.

    python benchmarks/pii.py [--sizes 1 64 1024] [--rounds 7] [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugins import text_of
from versus_cpex import Contest, main

CONTEST = Contest(
    name="pii_filter",
    kind="pii_filter",
    config={"strategy": "redact"},
    cpex_kind="cpex_pii_filter.pii_filter.PIIFilterPlugin",
    cpex_module="cpex_pii_filter",
    cpex_config={"block_on_detection": False, "default_mask_strategy": "redact"},
    text_of=text_of,
    redacted=lambda text: [value for value in ("jane.doe@example.com",) if value in text],
)

if __name__ == "__main__":
    main(CONTEST, __doc__)
