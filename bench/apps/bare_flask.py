"""The ceiling for this stack: a bare Flask route that reads the push and answers ``success``.

Served exactly like the project: ``gunicorn -c gunicorn.conf.py --chdir bench/apps bare_flask:app``.
"""

from flask import Flask, request

app = Flask(__name__)


@app.route("/wechat", methods=["GET", "POST"])
def wechat():
    request.get_data()  # read the body, as every real callback must
    return "success"
