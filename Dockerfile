# NACE Explorer: the Streamlit app on CPU.
#   docker build -t nace-explorer .
#   docker run -p 8501:8501 nace-explorer
# Dependencies come from uv.lock, except torch: the lock pins PyPI's torch, which on Linux is the CUDA build
# (with about 3 GB of nvidia-*/cuda-* wheels), so the image installs the same torch version from PyTorch's CPU
# index instead (see docs/DEPLOY.md).
FROM python:3.11-slim

ARG UV_VERSION=0.13.9
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_SYNC=1 \
    UV_FROZEN=1 \
    UV_CACHE_DIR=/tmp/uv-cache \
    NACE_CACHE_DIR=/cache \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
 && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin nace \
 && mkdir -p /app /cache \
 && chown nace:nace /cache

WORKDIR /app

# Dependencies first (their own layer, rebuilt only when the lock changes).
COPY pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --no-emit-project --no-hashes --no-annotate --no-header > /tmp/locked.txt \
 && grep -E '^torch==' /tmp/locked.txt | cut -d ';' -f 1 | tr -d ' ' > /tmp/torch.txt \
 && grep -v -E '^(torch|triton)==|^(nvidia|cuda)-' /tmp/locked.txt > /tmp/requirements.txt \
 && uv venv /app/.venv --python /usr/local/bin/python3.11 \
 && uv pip install --python /app/.venv/bin/python --no-deps -r /tmp/requirements.txt \
 && uv pip install --python /app/.venv/bin/python --no-deps --index-url "${TORCH_INDEX}" -r /tmp/torch.txt \
 && rm -rf /tmp/uv-cache /tmp/*.txt

# The project itself.
COPY . .
RUN uv pip install --python /app/.venv/bin/python --no-deps --editable . \
 && rm -rf /tmp/uv-cache

USER 10001:10001
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STREAMLIT_SERVER_PORT', '8501') + '/_stcore/health', timeout=4)"]

# The README's run command; address and port come from STREAMLIT_SERVER_ADDRESS / STREAMLIT_SERVER_PORT.
CMD ["uv", "run", "streamlit", "run", "app.py"]
