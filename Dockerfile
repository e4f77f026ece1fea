# One image for web, workers and beat. torch from PyPI is the CUDA build on Linux x86_64.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DEBUG=0 \
    REWARDLAB_VAR_DIR=/data MEDIA_ROOT=/data/media MODEL_ROOT=/data/models STATIC_ROOT=/app/staticfiles

RUN apt-get update && apt-get install -y --no-install-recommends libpq5 curl && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 rewardlab && mkdir -p /data /app && chown rewardlab /data /app
WORKDIR /app

# torch first, in its own layer: the locked release (requirements/lock.txt), or another build.
ARG TORCH_SPEC=torch==2.13.0
RUN pip install "$TORCH_SPEC"
# Then exactly the locked versions of everything else, and the project itself without resolving again.
COPY requirements/lock.txt requirements/lock.txt
RUN sed '/^torch==/d' requirements/lock.txt > /tmp/lock.txt && pip install -r /tmp/lock.txt && rm /tmp/lock.txt
COPY pyproject.toml README.md LICENSE ./
COPY rewardlab rewardlab
COPY annotation annotation
COPY training training
COPY preferences preferences
COPY common common
RUN pip install --no-deps .
COPY manage.py Procfile ./
COPY templates templates
COPY static static
RUN DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

USER rewardlab
EXPOSE 8000
CMD ["gunicorn", "-c", "python:rewardlab.gunicorn_conf", "rewardlab.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
