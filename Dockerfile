FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GUNICORN_BIND=0.0.0.0:8000 WECHAT_STORE_URL=sqlite:////data/wechat.sqlite3

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install ".[redis,rq]"
COPY wsgi.py gunicorn.conf.py ./

RUN useradd --system --uid 10001 --home-dir /srv wechat && mkdir /data && chown wechat /data
USER wechat
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
