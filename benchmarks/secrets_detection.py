"""
``secrets_detection`` against cpex-secrets-detection (Rust) behind cpex's manager
================================================================================

The same ``tool_pre_invoke`` payload at 1 KB, 64 KB and 1 MB: ``plugins.text_of``
prose (with its PII items) and a secret every ~350 bytes, rotating through
an AWS access key id, a GitHub token, a Slack bot token, a Stripe secret key
and a Google API key (types both plugins detect, so both do the same
redactions), through our ``secrets_detection`` (``invoke_sync``, as a WSGI
app calls it, and ``invoke``) and through cpex 0.1.4's
``PluginManager.invoke_hook`` with cpex-secrets-detection 0.3.14
(``block_on_detection: false``, ``redact: true``), timed side by side by
``versus_cpex.py``, which checks that both outputs lost every secret. Target:
cpex's time over ours at least 1.0x at every size. (Not ``secrets.py``: that
name would shadow the standard library's ``secrets``, which pydantic
imports, for every script in this directory.)

    python benchmarks/secrets_detection.py [--sizes 1 64 1024] [--rounds 7] [--quick] [--json FILE]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugins import text_of
from versus_cpex import Contest, main

CPEX_KIND = "cpex_secrets_detection.secrets_detection.SecretsDetectionPlugin"
CPEX_CONFIG = {"block_on_detection": False, "redact": True}
# Made up, but not placeholders: random-looking bodies of the right shapes.
SECRETS = [
    "AKIA2E0A8F3B244C9986",
    "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
]
EVERY = 350


def secret_text(size: int, seed: int = 3) -> str:
    """``text_of(size)`` with one of ``SECRETS`` after every ``EVERY`` characters, cut to ``size``."""
    rng = random.Random(seed)
    base = text_of(size)
    pieces: list[str] = []
    for position in range(0, len(base), EVERY):
        pieces.append(base[position : position + EVERY])
        pieces.append(f" {rng.choice(SECRETS)} ")
    text = "".join(pieces)[:size]
    # A secret cut short by the size is no longer that secret; end on a space.
    return text[: text.rfind(" ")]


CONTEST = Contest(
    name="secrets_detection",
    kind="secrets_detection",
    cpex_kind=CPEX_KIND,
    cpex_module="cpex_secrets_detection",
    cpex_config=CPEX_CONFIG,
    text_of=secret_text,
    redacted=lambda text: [secret for secret in SECRETS if secret in text],
)

if __name__ == "__main__":
    main(CONTEST, __doc__)
