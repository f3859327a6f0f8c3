# syntax=docker/dockerfile:1
# AstraRay's image: the four services (`astra serve <name>`), the node agent with
# Ray (`astra agent`), the gateway (`astra gateway`), `astra up` and the operator CLI.
# The C++ routing core is compiled in the build stage; the image keeps the virtualenv.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/astra \
    PATH=/opt/astra/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv "$VIRTUAL_ENV"
WORKDIR /src
# The dependencies first, in a layer of their own that a change of the code keeps.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt
COPY CMakeLists.txt README.md ./
COPY astra astra
COPY services services
COPY node_agent node_agent
COPY gateway gateway
RUN pip install . && astra --version

FROM python:${PYTHON_VERSION}-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin astra \
    && mkdir -p /var/lib/astra /models \
    && chown astra:astra /var/lib/astra /models
COPY --from=build /opt/astra /opt/astra
ENV PATH=/opt/astra/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ASTRA_STATE_DIR=/var/lib/astra
USER astra
WORKDIR /home/astra
EXPOSE 7100 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["astra", "health", "127.0.0.1:7100"]
CMD ["astra", "up", "--api-address", "0.0.0.0:7100"]
