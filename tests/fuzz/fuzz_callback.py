#!/usr/bin/env python3
"""Coverage-guided fuzzing of the push path with atheris (libFuzzer for Python).

Every input is a request body and goes to three targets:

1. ``app.messages.parse``: returns a typed push or raises ``PushError``, nothing else;
2. ``AESEnvelope.decrypt``: on the bytes as an ``Encrypt`` value, on their base64, and on the
   bytes as a hand-made (unpadded, unchecked) plaintext run through raw AES: returns bytes or
   raises ``CryptoError``; and ``encrypt`` -> ``decrypt`` gives the bytes back;
3. the whole callback through Flask's test client: as a signed plaintext push, inside a valid
   safe-mode envelope, and as the safe-mode envelope itself.  The answer is 200/400 (403 for the
   raw envelope, 413 past the size limit), never 500; a 200 is ``success`` or well-formed XML
   (in safe mode: a signed envelope that decrypts to well-formed XML).

Any other exception, a 500, a malformed reply or an input taking more than a second is a crash
for libFuzzer (run it with ``-timeout=1`` too, which also catches a hang in C code).  Exceptions
the app catches and logs itself (a failing handler answers ``success`` by contract) are printed
once per place they come from, so they are seen without stopping the run.

    python tests/fuzz/fuzz_callback.py -max_total_time=60 -timeout=1 -dict=tests/fuzz/xml.dict tests/fuzz/corpus

atheris is not a project dependency: without it this script says so and exits 0.
"""

from __future__ import annotations

import sys

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    print("fuzz_callback: atheris is not installed (pip install atheris); nothing to do", file=sys.stderr)
    sys.exit(0)

import base64
import logging
import tempfile
import time
import traceback
from pathlib import Path
from urllib.parse import urlencode

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["app"]):
    from app import create_app, crypto
    from app.crypto import AESEnvelope, CryptoError
    from app.messages import Push, parse
    from app.testing import encrypt_push, open_reply, signed_query
    from app.xmlsafe import PushError

TOKEN = "fuzz-token"
APP_ID = "wx49f0ab532d5d035a"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
MAX_BODY = 262144
SLOW = 1.0  # seconds


class _LoggedExceptions(logging.Handler):
    """Print each distinct exception the app logs with a traceback, once."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.seen: set[tuple[str, str, int]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[1] is None:
            return
        exc = record.exc_info[1]
        frames = traceback.extract_tb(exc.__traceback__)
        last = frames[-1] if frames else None
        key = (type(exc).__name__, last.filename if last else "?", last.lineno if last else 0)
        if key not in self.seen:
            self.seen.add(key)
            print(f"\n[fuzz] the app logged {type(exc).__name__}: {exc} ({record.getMessage()})", file=sys.stderr)
            traceback.print_exception(*record.exc_info, file=sys.stderr)


def _make_app():
    root = logging.getLogger()
    root.addHandler(_LoggedExceptions())  # also keeps create_app from adding a chatty stream handler
    logging.getLogger("app").setLevel(logging.ERROR)  # refusals are WARNINGs: expected by the thousand
    store = Path(tempfile.mkdtemp(prefix="wechat-fuzz-")) / "wechat.sqlite3"
    app = create_app(
        {
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APP_ID": APP_ID,
            "WECHAT_ENCODING_AES_KEY": AES_KEY,
            "WECHAT_PLUGINS": "app.plugins.echo",
            "WECHAT_STORE_URL": f"sqlite:///{store}",
            "WECHAT_MAX_BODY_BYTES": str(MAX_BODY),
        }
    )
    # An exception that escapes the view reaches the harness with its traceback instead of a 500.
    app.config["PROPAGATE_EXCEPTIONS"] = True
    return app


APP = _make_app()
CLIENT = APP.test_client()
PATH = APP.extensions["wechat"].settings.callback_path
ENVELOPE = AESEnvelope(AES_KEY, APP_ID)
RAW_KEY = base64.b64decode(AES_KEY + "=")
REPLY_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)


# --- the targets ----------------------------------------------------------------------


def check_parse(data: bytes) -> None:
    try:
        push = parse(data)
    except PushError:
        return
    assert isinstance(push, Push), type(push)
    assert push.to_user and push.from_user and push.msg_type, push
    assert isinstance(push.create_time, int), push.create_time
    assert isinstance(push.dedup_key, str)


def _raw_encrypt(plain: bytes) -> bytes:
    plain = plain + b"\0" * (-len(plain) % 32) if plain else b"\0" * 32
    encryptor = Cipher(algorithms.AES(RAW_KEY), modes.CBC(RAW_KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize())


def check_envelope(data: bytes) -> None:
    for value in (data, base64.b64encode(data), _raw_encrypt(data)):
        try:
            result = ENVELOPE.decrypt(value)
        except CryptoError:
            continue
        assert isinstance(result, bytes)
    assert ENVELOPE.decrypt(ENVELOPE.encrypt(data)) == data


def _post(body: bytes, query: dict[str, str]):
    return CLIENT.post(f"{PATH}?{urlencode(query)}", data=body, content_type="text/xml")


def _check_reply(response, allowed: tuple[int, ...], safe: bool) -> None:
    status, raw = response.status_code, response.get_data()
    assert status in allowed, f"status {status}: {raw[:300]!r}"
    if status != 200 or raw == b"success":
        return
    if safe:
        raw = open_reply(raw, TOKEN, ENVELOPE)  # checks MsgSignature, decrypts
    assert response.mimetype == "application/xml", response.mimetype
    root = etree.fromstring(raw, REPLY_PARSER)  # raises if the reply is not well-formed
    assert root.tag == "xml" and root.findtext("MsgType"), raw[:300]


def check_callback(data: bytes) -> None:
    too_big = (413,) if len(data) > MAX_BODY else ()

    # 1. a signed plaintext push
    _check_reply(_post(data, signed_query(TOKEN)), (200, 400, *too_big), safe=False)

    # 2. the bytes inside a valid safe-mode envelope
    body, query = encrypt_push(data, TOKEN, ENVELOPE, signed_query(TOKEN))
    _check_reply(_post(body, query), (200, 400, *too_big), safe=True)

    # 3. the bytes as the envelope, msg_signature over whatever Encrypt they carry
    try:
        encrypted = (etree.fromstring(data, REPLY_PARSER).findtext("Encrypt") or "").strip()
    except (etree.XMLSyntaxError, ValueError):
        encrypted = ""
    query = signed_query(TOKEN)
    query.update(encrypt_type="aes", msg_signature=crypto.sign(TOKEN, query["timestamp"], query["nonce"], encrypted))
    _check_reply(_post(data, query), (200, 400, 403, *too_big), safe=True)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    for target in (check_parse, check_envelope, check_callback):
        start = time.monotonic()
        target(data)
        elapsed = time.monotonic() - start
        if elapsed > SLOW:
            raise AssertionError(f"{target.__name__} took {elapsed:.2f}s on a {len(data)}-byte input")


def _seed_if_empty(argv: list[str]) -> None:
    """Seed the corpus directory (the first non-flag argument) when it is missing or empty."""
    directories = [arg for arg in argv[1:] if not arg.startswith("-")]
    if directories:
        corpus = Path(directories[0])
        if not corpus.exists() or not any(corpus.iterdir()):
            from make_corpus import write_corpus

            print(f"fuzz_callback: seeded {write_corpus(corpus)} inputs into {corpus}", file=sys.stderr)


def main() -> None:
    _seed_if_empty(sys.argv)
    for arg in sys.argv[1:]:
        if arg.startswith("-artifact_prefix=") and arg.endswith("/"):
            Path(arg.split("=", 1)[1]).mkdir(parents=True, exist_ok=True)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
