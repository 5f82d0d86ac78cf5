"""Signatures and the AES envelope of safe mode: the one place that signs and encrypts.

WeChat signs a push with SHA-1 over the sorted token, timestamp and nonce (and, in
safe mode, the ``Encrypt`` value).  Safe mode wraps the XML as AES-256-CBC over::

    16 random bytes | 4-byte big-endian length | XML | appid | PKCS#7 padding to 32 bytes

with key = base64(EncodingAESKey + "=") and iv = key[:16].  Every failure here is a
:class:`CryptoError`; the callback answers all of them with 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32  # WeChat pads to 32 bytes, not AES's 16
_AES_KEY_PATTERN = re.compile(r"[A-Za-z0-9+/]{43}")


class CryptoError(Exception):
    """A push failed authentication or decryption."""


class SignatureError(CryptoError):
    """The signature or msg_signature does not match."""


class DecryptError(CryptoError):
    """The Encrypt value is not valid base64, AES, padding or layout."""


class AppIdMismatch(CryptoError):
    """The push decrypted, but for another official account."""


def sign(*parts: str) -> str:
    """SHA-1 hex digest over the sorted, concatenated ``parts``."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(signature: str, *parts: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs ``parts``.

    The comparison takes constant time so the signature cannot be guessed byte by byte.
    """
    if not hmac.compare_digest(sign(*parts).encode(), signature.lower().encode()):
        raise SignatureError("signature does not match")


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key an EncodingAESKey stands for; ValueError saying why when it is not one."""
    if not _AES_KEY_PATTERN.fullmatch(encoding_aes_key):
        raise ValueError(f"must be 43 base64 characters (A-Z, a-z, 0-9, +, /), got {len(encoding_aes_key)} characters")
    return base64.b64decode(encoding_aes_key + "=")  # 43 such characters always decode to 32 bytes


class AESEnvelope:
    """Encrypts and decrypts safe-mode payloads for one official account."""

    def __init__(self, encoding_aes_key: str, app_id: str) -> None:
        key = decode_aes_key(encoding_aes_key)
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))  # built once; a context per message
        self.app_id = app_id.encode()

    def decrypt(self, encrypted: str | bytes) -> bytes:
        """Return the XML inside a base64 ``Encrypt`` value."""
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError("Encrypt is not valid base64") from None
        if not ciphertext or len(ciphertext) % BLOCK_SIZE:
            raise DecryptError(f"Encrypt is {len(ciphertext)} bytes, not a multiple of {BLOCK_SIZE}")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(ciphertext) + decryptor.finalize()

        pad = plain[-1]
        if not 1 <= pad <= BLOCK_SIZE or plain[-pad:] != bytes([pad]) * pad:
            raise DecryptError("bad PKCS#7 padding")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise DecryptError("decrypted payload is too short")
        (length,) = struct.unpack(">I", plain[16:20])
        if length > len(plain) - 20:
            raise DecryptError("decrypted length field exceeds the payload")
        xml, app_id = plain[20 : 20 + length], plain[20 + length :]
        if not hmac.compare_digest(app_id, self.app_id):
            raise AppIdMismatch("push is for another appid")
        return xml

    def encrypt(self, xml: bytes) -> str:
        """Return the base64 ``Encrypt`` value for ``xml``, with a fresh random prefix."""
        plain = secrets.token_bytes(16) + struct.pack(">I", len(xml)) + xml + self.app_id
        pad = BLOCK_SIZE - len(plain) % BLOCK_SIZE
        plain += bytes([pad]) * pad
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def new_nonce() -> str:
    """A random numeric nonce, the form WeChat itself uses (up to 12 digits)."""
    return str(int.from_bytes(secrets.token_bytes(5), "big"))


def seal(
    envelope: AESEnvelope, token: str, xml: bytes, timestamp: int | None = None, nonce: str | None = None
) -> bytes:
    """Encrypt ``xml`` and wrap it in the signed envelope a safe-mode reply carries."""
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    encrypted = envelope.encrypt(xml)
    signature = sign(token, timestamp_text, nonce, encrypted)
    return (
        f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
        f"<TimeStamp>{timestamp_text}</TimeStamp>"
        f"<Nonce><![CDATA[{nonce}]]></Nonce></xml>"
    ).encode()
