"""Flask + wechatpy text echo, after wechatpy's own Flask example (examples/echo).

Same WECHAT_* variables and path as the project; safe mode when ``encrypt_type=aes``.
"""

import os

from flask import Flask, abort, request
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_TOKEN"]
AES_KEY = os.environ.get("WECHAT_ENCODING_AES_KEY")
APP_ID = os.environ.get("WECHAT_APP_ID")

# The example builds WeChatCrypto per request; built once here, the cheaper choice.
CRYPTO = WeChatCrypto(TOKEN, AES_KEY, APP_ID) if AES_KEY else None

app = Flask(__name__)


@app.route("/wechat", methods=["GET", "POST"])
def wechat():
    signature = request.args.get("signature", "")
    timestamp = request.args.get("timestamp", "")
    nonce = request.args.get("nonce", "")
    encrypt_type = request.args.get("encrypt_type", "raw")
    msg_signature = request.args.get("msg_signature", "")
    try:
        check_signature(TOKEN, signature, timestamp, nonce)
    except InvalidSignatureException:
        abort(403)
    if request.method == "GET":
        return request.args.get("echostr", "")

    if encrypt_type == "raw":
        msg = parse_message(request.data)
        if msg.type == "text":
            reply = create_reply(msg.content, msg)
        else:
            reply = create_reply("Sorry, can not handle this for now", msg)
        return reply.render()

    crypto = CRYPTO
    try:
        xml = crypto.decrypt_message(request.data, msg_signature, timestamp, nonce)
    except (InvalidSignatureException, InvalidAppIdException):
        abort(403)
    msg = parse_message(xml)
    if msg.type == "text":
        reply = create_reply(msg.content, msg)
    else:
        reply = create_reply("Sorry, can not handle this for now", msg)
    return crypto.encrypt_message(reply.render(), nonce, timestamp)
