# The todo-api image: `todo-api serve` by default; `todo-api migrate` for the one-shot job.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY backend/src backend/src
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TODO_API_SQL_DIR=/app/sql
# A fixed numeric uid, so platforms that check runAsNonRoot can see it is not root.
RUN groupadd --system --gid 10001 todo \
    && useradd --system --uid 10001 --gid todo --home-dir /app --shell /usr/sbin/nologin todo
COPY --from=build /opt/venv /opt/venv
COPY sql /app/sql
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["todo-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
