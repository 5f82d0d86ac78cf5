"""Signatures and the safe-mode AES envelope (``app.crypto``).

The fixed vector is the encrypted text push of wechatpy's test suite, made in WeChat's
own style: token ``123456``, EncodingAESKey ``kWxPEV2U...``, appid ``wx49f0ab532d5d035a``.
Every malformed ``Encrypt`` must end in :class:`DecryptError` or :class:`AppIdMismatch`
(both :class:`CryptoError`, which the callback answers with 403), never another exception.
"""

from __future__ import annotations

import base64
import hmac
import struct
from unittest import mock

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from app import crypto
from app.crypto import AESEnvelope, AppIdMismatch, CryptoError, DecryptError, SignatureError

# --- the official-style vector ------------------------------------------------

TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx49f0ab532d5d035a"
MSG_SIGNATURE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
TIMESTAMP = "1411525903"
NONCE = "461056294"

ENVELOPE_XML = b"""<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""

ENCRYPTED = etree.fromstring(ENVELOPE_XML).findtext("Encrypt")

RAW_KEY = base64.b64decode(AES_KEY + "=")


@pytest.fixture(scope="module")
def envelope() -> AESEnvelope:
    return AESEnvelope(AES_KEY, APP_ID)


def raw_encrypt(plain: bytes, key: bytes = RAW_KEY) -> str:
    """AES-256-CBC with iv = key[:16] and *no* padding of our own: ``plain`` is sent as given."""
    assert len(plain) % 16 == 0
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def raw_decrypt(encrypted: str, key: bytes = RAW_KEY) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def layout(xml: bytes, app_id: bytes = APP_ID.encode(), length: int | None = None, prefix: bytes = b"p" * 16) -> bytes:
    """WeChat's plaintext layout without padding: prefix | length | xml | appid."""
    return prefix + struct.pack(">I", len(xml) if length is None else length) + xml + app_id


def pkcs7_32(plain: bytes) -> bytes:
    pad = 32 - len(plain) % 32
    return plain + bytes([pad]) * pad


# --- the vector ---------------------------------------------------------------


def test_vector_msg_signature_is_sha1_of_sorted_parts():
    assert crypto.sign(TOKEN, TIMESTAMP, NONCE, ENCRYPTED) == MSG_SIGNATURE
    # sorted: the order the parts are given in does not matter
    assert crypto.sign(ENCRYPTED, NONCE, TOKEN, TIMESTAMP) == MSG_SIGNATURE
    crypto.check_signature(MSG_SIGNATURE, TOKEN, TIMESTAMP, NONCE, ENCRYPTED)


def test_vector_decrypts_to_the_text_push(envelope):
    xml = envelope.decrypt(ENCRYPTED)
    root = etree.fromstring(xml)
    assert root.findtext("Content") == "test"
    assert root.findtext("FromUserName") == "messense"
    assert root.findtext("ToUserName") == APP_ID
    assert root.findtext("MsgType") == "text"
    assert int(root.findtext("MsgId")) == 4363689963896700987
    assert int(root.findtext("CreateTime")) == 1411525903


def test_vector_decrypts_from_bytes_too(envelope):
    assert envelope.decrypt(ENCRYPTED.encode()) == envelope.decrypt(ENCRYPTED)


def test_vector_refuses_a_wrong_msg_signature():
    wrong = ("0" if MSG_SIGNATURE[0] != "0" else "1") + MSG_SIGNATURE[1:]
    with pytest.raises(SignatureError):
        crypto.check_signature(wrong, TOKEN, TIMESTAMP, NONCE, ENCRYPTED)
    with pytest.raises(SignatureError):
        crypto.check_signature(MSG_SIGNATURE, "654321", TIMESTAMP, NONCE, ENCRYPTED)
    with pytest.raises(SignatureError):
        crypto.check_signature(MSG_SIGNATURE, TOKEN, TIMESTAMP, NONCE, ENCRYPTED[:-2] + "A=")
    with pytest.raises(SignatureError):
        crypto.check_signature("", TOKEN, TIMESTAMP, NONCE, ENCRYPTED)
    with pytest.raises(SignatureError):
        crypto.check_signature(MSG_SIGNATURE + "0", TOKEN, TIMESTAMP, NONCE, ENCRYPTED)


def test_signature_hex_case_does_not_matter():
    crypto.check_signature(MSG_SIGNATURE.upper(), TOKEN, TIMESTAMP, NONCE, ENCRYPTED)


def test_check_signature_compares_in_constant_time():
    original = hmac.compare_digest
    with mock.patch.object(crypto.hmac, "compare_digest", wraps=original) as spy:
        crypto.check_signature(MSG_SIGNATURE, TOKEN, TIMESTAMP, NONCE, ENCRYPTED)
        assert spy.call_count == 1
        compared = {bytes(arg) for arg in spy.call_args.args}
        assert compared == {MSG_SIGNATURE.encode()}

        spy.reset_mock()
        with pytest.raises(SignatureError):
            crypto.check_signature("f" * 40, TOKEN, TIMESTAMP, NONCE, ENCRYPTED)
        assert spy.call_count == 1
        assert {bytes(arg) for arg in spy.call_args.args} == {MSG_SIGNATURE.encode(), b"f" * 40}


def test_check_signature_trusts_compare_digest():
    """The verdict is compare_digest's: no other equality test decides it."""
    with mock.patch.object(crypto.hmac, "compare_digest", return_value=False):
        with pytest.raises(SignatureError):
            crypto.check_signature(MSG_SIGNATURE, TOKEN, TIMESTAMP, NONCE, ENCRYPTED)


# --- encrypt / decrypt ----------------------------------------------------------


def test_round_trip_with_a_fresh_random_prefix(envelope):
    xml = b"<xml><Content><![CDATA[\xe4\xbd\xa0\xe5\xa5\xbd]]></Content></xml>"
    first, second = envelope.encrypt(xml), envelope.encrypt(xml)
    assert first != second
    assert envelope.decrypt(first) == xml
    assert envelope.decrypt(second) == xml
    plain_first, plain_second = raw_decrypt(first), raw_decrypt(second)
    assert plain_first[:16] != plain_second[:16]  # the random prefix differs...
    assert plain_first[16:] == plain_second[16:]  # ...and only the prefix
    assert plain_first[16:20] == struct.pack(">I", len(xml))
    assert plain_first[20 : 20 + len(xml)] == xml
    assert plain_first[20 + len(xml) : 20 + len(xml) + len(APP_ID)] == APP_ID.encode()


def test_ciphertext_is_padded_to_32_bytes(envelope):
    for size in (0, 1, 11, 12, 13, 31, 32, 33, 100):
        xml = b"x" * size
        ciphertext = base64.b64decode(envelope.encrypt(xml))
        assert len(ciphertext) % 32 == 0
        plain = raw_decrypt(envelope.encrypt(xml))
        pad = plain[-1]
        assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad
        assert envelope.decrypt(envelope.encrypt(xml)) == xml


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=3000))
def test_round_trip_any_bytes(xml):
    envelope = AESEnvelope(AES_KEY, APP_ID)
    assert envelope.decrypt(envelope.encrypt(xml)) == xml


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=600))
def test_arbitrary_base64_ciphertext_fails_only_with_crypto_errors(ciphertext):
    envelope = AESEnvelope(AES_KEY, APP_ID)
    try:
        envelope.decrypt(base64.b64encode(ciphertext))
    except (DecryptError, AppIdMismatch):
        pass


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=200))
def test_arbitrary_encrypt_text_fails_only_with_crypto_errors(text):
    envelope = AESEnvelope(AES_KEY, APP_ID)
    try:
        envelope.decrypt(text)
    except (DecryptError, AppIdMismatch):
        pass


def test_the_vector_from_the_official_key_decrypts_what_it_encrypts(envelope):
    xml = envelope.decrypt(ENCRYPTED)
    assert envelope.decrypt(envelope.encrypt(xml)) == xml


# --- tampering --------------------------------------------------------------------


def _flip(encrypted: str, position: int, mask: int) -> str:
    data = bytearray(base64.b64decode(encrypted))
    data[position] ^= mask
    return base64.b64encode(bytes(data)).decode()


VECTOR_CIPHERTEXT_SIZE = len(base64.b64decode(ENCRYPTED))  # 320: 16 prefix + 4 + 281 XML + 18 appid + 1 pad
# Flips here reach the length field (bytes 0-3 of the first block flip plaintext bytes 16-19)
# or the appid and padding (the last two AES blocks): the envelope itself must notice.
DETECTED_POSITIONS = [0, 1, 2, 3, *range(VECTOR_CIPHERTEXT_SIZE - 32, VECTOR_CIPHERTEXT_SIZE)]


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
@pytest.mark.parametrize("position", DETECTED_POSITIONS)
def test_flipped_byte_in_length_appid_or_padding_is_refused(envelope, position, mask):
    with pytest.raises((DecryptError, AppIdMismatch)):
        envelope.decrypt(_flip(ENCRYPTED, position, mask))


def test_any_flipped_byte_never_gives_back_the_push_nor_another_exception(envelope):
    """AES-CBC has no MAC (msg_signature is the integrity check): a flip inside the XML's
    blocks decrypts to garbled XML.  It must still never decrypt to the original push, and
    never fail with anything but a CryptoError."""
    original = envelope.decrypt(ENCRYPTED)
    refused = 0
    for position in range(VECTOR_CIPHERTEXT_SIZE):
        try:
            xml = envelope.decrypt(_flip(ENCRYPTED, position, 0x01))
        except (DecryptError, AppIdMismatch):
            refused += 1
        else:
            assert xml != original, position
    assert refused >= len(DETECTED_POSITIONS)


def test_wrong_appid_is_an_appid_mismatch(envelope):
    for other in ("wx0000000000000000", "wx49f0ab532d5d035", "wx49f0ab532d5d035ab", "WX49F0AB532D5D035A", ""):
        with pytest.raises(AppIdMismatch):
            AESEnvelope(AES_KEY, other).decrypt(ENCRYPTED)
    sealed_for_other = AESEnvelope(AES_KEY, "wx0000000000000000").encrypt(b"<xml/>")
    with pytest.raises(AppIdMismatch):
        envelope.decrypt(sealed_for_other)


def test_wrong_key_is_refused(envelope):
    other_key = "A" * 43
    with pytest.raises((DecryptError, AppIdMismatch)):
        AESEnvelope(other_key, APP_ID).decrypt(ENCRYPTED)


def test_appid_mismatch_and_decrypt_error_are_crypto_errors():
    assert issubclass(AppIdMismatch, CryptoError)
    assert issubclass(DecryptError, CryptoError)
    assert issubclass(SignatureError, CryptoError)


# --- malformed plaintext, encrypted with raw AES -------------------------------------

XML = b"<xml><Content>hi</Content></xml>"


def test_well_formed_raw_plaintext_decrypts(envelope):
    """The control for the cases below: the hand-made layout is what the envelope reads."""
    assert envelope.decrypt(raw_encrypt(pkcs7_32(layout(XML)))) == XML


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00", id="last-byte-0"),
        pytest.param(b"\x21", id="last-byte-33"),
        pytest.param(b"\xff", id="last-byte-255"),
        pytest.param(b"\x04\x04\x05\x04", id="inconsistent-4"),
        pytest.param(b"\x02" + b"\x03", id="inconsistent-3"),
        pytest.param(b"\x20" * 31 + b"\x1f" + b"\x20", id="32-with-a-wrong-byte"),
    ],
)
def test_bad_padding_is_a_decrypt_error(envelope, tail):
    plain = layout(XML)
    filler = (-(len(plain) + len(tail))) % 32
    plain = plain + b"z" * filler + tail
    assert len(plain) % 32 == 0 and plain.endswith(tail)
    with pytest.raises(DecryptError):
        envelope.decrypt(raw_encrypt(plain))


def test_padding_of_33_over_a_64_byte_plaintext_is_a_decrypt_error(envelope):
    """33 bytes of value 33 look consistent but exceed WeChat's 32-byte block."""
    plain = layout(b"<a/>", app_id=b"")  # 24 bytes
    plain += b"\x21" * (64 - len(plain))
    assert len(plain) == 64
    with pytest.raises(DecryptError):
        envelope.decrypt(raw_encrypt(plain))


@pytest.mark.parametrize("length", [len(XML) + len(APP_ID) + 1, len(XML) + 1000, 2**31, 2**32 - 1])
def test_length_field_beyond_the_payload_is_a_decrypt_error(envelope, length):
    plain = pkcs7_32(layout(XML, length=length))
    with pytest.raises(DecryptError):
        envelope.decrypt(raw_encrypt(plain))


def test_length_field_short_of_the_payload_is_an_appid_mismatch(envelope):
    plain = pkcs7_32(layout(XML, length=len(XML) - 1))
    with pytest.raises(AppIdMismatch):
        envelope.decrypt(raw_encrypt(plain))


def test_payload_shorter_than_prefix_and_length_is_a_decrypt_error(envelope):
    for plain in (b"\x20" * 32, b"q" * 10 + b"\x16" * 22, b"q" * 19 + b"\x0d" * 13):
        assert len(plain) == 32
        with pytest.raises(DecryptError):
            envelope.decrypt(raw_encrypt(plain))


@pytest.mark.parametrize(
    "encrypted",
    [
        pytest.param("not base64!", id="punctuation"),
        pytest.param("abc", id="bad-length"),
        pytest.param("QUJD=", id="bad-padding"),
        pytest.param("密文密文", id="non-ascii"),
        pytest.param(ENCRYPTED[:100] + "\n" + ENCRYPTED[100:], id="embedded-newline"),
        pytest.param(ENCRYPTED[:100] + "*" + ENCRYPTED[101:], id="one-bad-char"),
        pytest.param("====", id="only-padding"),
        pytest.param(b"\xff\xfe", id="bytes-not-ascii"),
    ],
)
def test_bad_base64_is_a_decrypt_error(envelope, encrypted):
    with pytest.raises(DecryptError):
        envelope.decrypt(encrypted)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 31, 33, 48, 63, 320 - 16])
def test_ciphertext_not_a_multiple_of_32_is_a_decrypt_error(envelope, size):
    with pytest.raises(DecryptError):
        envelope.decrypt(base64.b64encode(b"\x5a" * size))


def test_truncated_vector_is_a_decrypt_error(envelope):
    ciphertext = base64.b64decode(ENCRYPTED)
    with pytest.raises(DecryptError):
        envelope.decrypt(base64.b64encode(ciphertext[:-16]))
    with pytest.raises((DecryptError, AppIdMismatch)):
        envelope.decrypt(base64.b64encode(ciphertext[:-32]))


# --- seal ---------------------------------------------------------------------------


def test_seal_produces_a_verifiable_envelope(envelope):
    reply = "<xml><Content><![CDATA[回复 ]]]]><![CDATA[>]]></Content></xml>".encode()
    sealed = crypto.seal(envelope, TOKEN, reply, timestamp=1411525903, nonce="461056294")
    root = etree.fromstring(sealed)
    assert [child.tag for child in root] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    assert root.findtext("TimeStamp") == "1411525903"
    assert root.findtext("Nonce") == "461056294"
    encrypted = root.findtext("Encrypt")
    crypto.check_signature(root.findtext("MsgSignature"), TOKEN, "1411525903", "461056294", encrypted)
    assert envelope.decrypt(encrypted) == reply


def test_seal_defaults_to_now_and_a_fresh_numeric_nonce(envelope):
    import time

    before = int(time.time())
    first = etree.fromstring(crypto.seal(envelope, TOKEN, b"<xml/>"))
    second = etree.fromstring(crypto.seal(envelope, TOKEN, b"<xml/>"))
    after = int(time.time())
    for root in (first, second):
        assert before <= int(root.findtext("TimeStamp")) <= after
        assert root.findtext("Nonce").isdigit()
        crypto.check_signature(
            root.findtext("MsgSignature"),
            TOKEN,
            root.findtext("TimeStamp"),
            root.findtext("Nonce"),
            root.findtext("Encrypt"),
        )
        assert envelope.decrypt(root.findtext("Encrypt")) == b"<xml/>"
    assert first.findtext("Encrypt") != second.findtext("Encrypt")


def test_seal_signature_does_not_verify_under_another_token(envelope):
    root = etree.fromstring(crypto.seal(envelope, TOKEN, b"<xml/>"))
    with pytest.raises(SignatureError):
        crypto.check_signature(
            root.findtext("MsgSignature"),
            "another-token",
            root.findtext("TimeStamp"),
            root.findtext("Nonce"),
            root.findtext("Encrypt"),
        )


# --- the key itself -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "A" * 42, "A" * 44, "!" * 43, "A" * 42 + "="])
def test_malformed_encoding_aes_key_is_refused(key):
    with pytest.raises(ValueError):
        AESEnvelope(key, APP_ID)
