"""WeRoBot's text echo (its README example), configured from the same WECHAT_* variables.

``WeRoBot`` is a Bottle WSGI app (``robot.wsgi``); its view checks the signature,
decrypts a safe-mode push (``Encrypt`` present) and encrypts the reply.  Sessions are
off (``SESSION_STORAGE=False``), WeRoBot's leanest configuration, unless
BENCH_WEROBOT_SESSION=1 turns its default SQLite session store back on.
"""

import os

import werobot

options = {}
if os.environ.get("BENCH_WEROBOT_SESSION") != "1":
    options["SESSION_STORAGE"] = False

robot = werobot.WeRoBot(
    token=os.environ["WECHAT_TOKEN"],
    app_id=os.environ.get("WECHAT_APP_ID"),
    encoding_aes_key=os.environ.get("WECHAT_ENCODING_AES_KEY"),
    **options,
)


@robot.text
def echo(message):
    return message.content


app = robot.wsgi
