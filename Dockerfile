# llmrelay in a container: mitmdump with the addon, listening on 8082.
#
#   docker build -t llmrelay .
#   docker run --rm -p 127.0.0.1:8082:8082 -e OPENAI_API_KEY \
#       -v "$PWD/config.yaml:/config/config.yaml:ro" -v llmrelay-data:/data llmrelay
#
# Inside the container the relay listens on every interface, so the configuration must set
# inbound keys (`relay.keys`): without them it refuses to start. Publish the port on
# 127.0.0.1 unless other machines should reach it.
FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt && pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
COPY addon ./addon
COPY config.yaml ./config.yaml

RUN useradd --create-home --uid 10001 relay && mkdir -p /data /config && chown relay /data
USER relay
VOLUME ["/data"]
EXPOSE 8082
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8082/health', timeout=2)"

ENTRYPOINT ["mitmdump", "-s", "addon/adapter.py", "--mode", "reverse:http://127.0.0.1:9", \
            "--set", "connection_strategy=lazy", "--listen-host", "0.0.0.0", "-p", "8082", \
            "--set", "adapter_config=/config/config.yaml", "--set", "adapter_data_dir=/data", \
            "--set", "confdir=/data/mitmproxy"]
