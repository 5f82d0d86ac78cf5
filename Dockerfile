# The callback server under gunicorn (gunicorn.conf.py), SQLite in the /data volume unless
# WECHAT_STORE_URL says otherwise.
#
#   docker build -t wechat-callback .
#   docker run -e WECHAT_TOKEN=... -p 8000:8000 -v wechat-data:/data wechat-callback
#
# Python is the version deploy/requirements.lock was resolved with (deploy/lock.py prints it);
# tests/test_docker.py checks the two agree.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv
# The dependencies first, in a layer of their own, at pinned versions: a change to the code
# does not reinstall them, and the image runs what the tests ran.
COPY deploy/requirements.lock deploy/requirements.lock
RUN pip install --no-deps -r deploy/requirements.lock
# Then the project itself, for its entry points (`flask wechat ...`); no dependency is resolved.
COPY pyproject.toml README.md pytest_wechat.py ./
COPY app ./app
RUN pip install --no-deps --no-build-isolation . && pip check && rm -rf build ./*.egg-info
COPY wsgi.py gunicorn.conf.py ./
COPY deploy/healthcheck.py deploy/healthcheck.py

# No home directory: nothing is written there (gunicorn.conf.py turns gunicorn's control socket off).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent wechat && mkdir /data && chown wechat /data
USER wechat
ENV GUNICORN_BIND=0.0.0.0:8000 WECHAT_STORE_URL=sqlite:////data/wechat.sqlite3
VOLUME /data
EXPOSE 8000

# GET /healthz on whatever GUNICORN_BIND says, failures in the first 30 s not counted (start-up probes the store).
# On `docker stop`, gunicorn's graceful timeout (8 s) ends before Docker's (10 s) sends SIGKILL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/srv/deploy/healthcheck.py"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
