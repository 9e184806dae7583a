# visdoc with the embedding server and both framework integrations.
# On a GPU host, PyPI's torch wheel brings its CUDA libraries; run with the NVIDIA container runtime.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HOME=/models
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY connectors connectors
COPY integrations integrations
RUN pip install ".[server,langchain,llamaindex]"
COPY examples examples
EXPOSE 8080
CMD ["visdoc", "serve", "--host", "0.0.0.0", "--port", "8080"]
