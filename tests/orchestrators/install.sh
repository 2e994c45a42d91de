#!/usr/bin/env bash
# Installs the real orchestrators (and the model registry) the tests run against, each in a
# virtualenv of its own (their dependencies conflict with ours and with each other):
#   $MONITORD_ORCHESTRATORS_DIR/prefect   Prefect 3 (`prefect server start`, SQLite)
#   $MONITORD_ORCHESTRATORS_DIR/airflow   Airflow 3 (`airflow standalone`, SQLite)
#   $MONITORD_ORCHESTRATORS_DIR/mlflow    MLflow 3 (`mlflow server`, SQLite; tests/registry)
# Default directory: .orchestrators/ at the repository root (git-ignored). `make test` runs
# this script; run it by hand after changing the pins below.
#
# Idempotent: a virtualenv whose stamp holds exactly the requirements and constraints below is
# left alone; any other (missing, half-installed, other pins) is rebuilt from scratch. They
# install in parallel.
#
# Pins: Airflow's supported way to pin its dependencies is its published constraint file per
# Airflow and Python version. All three are pinned the same way here, with the full
# set of versions that resolved and passed tests/orchestrators on CPython 3.11 (Linux):
# refresh them by installing the new top-level versions without constraints, running the
# tests, then pasting `pip freeze` of each virtualenv below. (MLflow 3.18.0 needed an
# mlflow-tracing 3.18.0 the index did not have yet: 3.17.2 is pinned.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${MONITORD_ORCHESTRATORS_DIR:-$ROOT/.orchestrators}
PYTHON=${PYTHON:-python3}

PREFECT_REQUIREMENT="prefect==3.9.1"
PREFECT_CONSTRAINTS=$(
    cat <<'PINS'
aiosqlite==0.22.1
alembic==1.20.1
amplitude-analytics==1.3.0
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
apprise==2.0.1
asgi-lifespan==2.1.0
asyncpg==0.32.0
attrs==26.1.0
beartype==0.23.1
burner-redis==0.1.7
cachetools==7.3.3
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cloudpickle==3.1.3
colorama==0.4.6
coolname==5.0.0
cronsim==2.8
cryptography==50.0.2
cyclopts==5.5.2
dateparser==1.5.0
docker==7.2.0
docstring_parser==0.18.0
exceptiongroup==1.3.2
fastapi==0.150.0
fsspec==2026.9.0
graphviz==0.21
greenlet==3.5.6
griffe==2.4.1
griffecli==2.4.1
griffelib==2.4.1
h11==0.16.0
h2==4.4.1
hpack==4.2.0
httpcore==1.0.9
httpx==0.28.1
humanize==4.17.0
hyperframe==6.1.0
idna==3.20
Jinja2==3.1.6
jinja2-humanize-extension==0.4.0
jsonpatch==1.48
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
Mako==1.4.3
Markdown==3.11.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
oauthlib==4.0.1
opentelemetry-api==1.45.2
orjson==3.13.0
packaging==26.3
pathspec==1.1.1
pendulum==3.3.0
pluggy==1.7.0
prefect==3.9.1
prometheus_client==0.26.0
py-key-value-aio==0.5.0
pycparser==3.12
pydantic==2.14.4
pydantic-extra-types==2.11.1
pydantic-settings==2.16.3
pydantic_core==2.50.5
pydocket==0.27.0
Pygments==2.21.0
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
python-json-logger==4.2.0
python-slugify==9.1.3
pytz==2026.6
PyYAML==6.0.4
readchar==4.2.2
redis==8.1.0
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
requests-oauthlib==2.0.0
rfc3339-validator==0.1.4
rich==15.0.0
rich-rst==2.2.0
rpds-py==2026.9.1
ruamel.yaml==0.19.1
semver==3.1.2
shellingham==1.5.4
six==1.17.0
sniffio==1.3.1
SQLAlchemy==2.1.9
starlette==1.10.0
text-unidecode==1.3
toml==0.10.2
typer==0.29.2
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
tzlocal==5.4.5
uncalled-for==0.6.2
urllib3==2.8.0
uvicorn==0.54.0
websockets==16.1.1
whenever==0.11.0
PINS
)

AIRFLOW_REQUIREMENT="apache-airflow==3.3.2"
AIRFLOW_CONSTRAINTS=$(
    cat <<'PINS'
a2wsgi==1.10.10
aiosmtplib==5.1.3
aiosqlite==0.22.1
alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
apache-airflow==3.3.2
apache-airflow-core==3.3.2
apache-airflow-providers-common-compat==1.23.0
apache-airflow-providers-common-io==1.11.0
apache-airflow-providers-common-sql==2.4.0
apache-airflow-providers-smtp==3.2.0
apache-airflow-providers-standard==1.21.0
apache-airflow-task-sdk==1.3.2
argcomplete==3.7.2
arrow==1.4.0
asgiref==3.13.0
attrs==26.1.0
babel==2.18.0
cachetools==8.0.2
cadwyn==7.0.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
colorlog==6.12.0
cron_descriptor==2.2.1
croniter==7.0.0
cryptography==50.0.2
Deprecated==1.3.1
dill==0.4.1
dnspython==2.9.2
email-validator==2.4.0
fastapi==0.136.3
fastapi-cli==0.0.34
fsspec==2026.9.0
googleapis-common-protos==1.76.0
greenback==1.3.0
greenlet==3.5.6
grpcio==1.85.3
h11==0.16.0
httpcore==1.0.9
httptools==0.9.0
httpx==0.28.1
idna==3.20
importlib_metadata==10.2.0
isoduration==20.11.0
itsdangerous==2.2.0
Jinja2==3.1.6
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
lazy-importer==0.1.0
lazy-object-proxy==1.13.0
libcst==1.9.0
linkify-it-py==2.2.0
lockfile==0.12.2
Mako==1.4.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
methodtools==0.4.7
more-itertools==11.2.1
msgspec==0.22.0
natsort==8.4.0
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
outcome==1.3.0.post0
packaging==26.3
pathlib_abc==0.5.2
pathspec==1.1.1
pendulum==3.3.0
pluggy==1.7.0
protobuf==7.36.2
psutil==7.2.2
pycparser==3.12
pydantic==2.14.4
pydantic-extra-types==2.11.1
pydantic-settings==2.16.3
pydantic_core==2.50.5
Pygments==2.21.0
pygtrie==2.6.2
PyJWT==2.15.1
python-daemon==3.1.2
python-dateutil==4.0.0
python-dotenv==1.2.4
python-multipart==0.0.34
python-slugify==9.2.0
PyYAML==6.0.4
referencing==0.37.0
requests==2.34.2
rich==15.0.0
rich-argparse==1.8.0
rich-toolkit==0.20.6
rpds-py==2026.9.1
setproctitle==1.3.8
shellingham==1.5.4
six==1.17.0
sniffio==1.3.1
SQLAlchemy==2.1.9
sqlparse==0.6.1
starlette==1.10.0
structlog==26.1.0
svcs==26.2.0
tabulate==0.10.0
tenacity==9.2.1
termcolor==3.3.0
text-unidecode==1.3
typer==0.29.2
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
universal_pathlib==0.3.10
urllib3==2.8.0
uuid6==2025.0.1
uvicorn==0.54.0
uvloop==0.23.0
watchfiles==1.3.0
websockets==17.4
wirerope==1.0.0
wrapt==2.5.2
zipp==4.1.2
PINS
)

MLFLOW_REQUIREMENT="mlflow==3.17.2"
MLFLOW_CONSTRAINTS=$(
    cat <<'PINS'
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
blinker==1.9.0
cachetools==7.3.3
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
contourpy==1.3.3
cryptography==50.0.2
cycler==0.12.1
databricks-sdk==0.167.0
docker==7.2.0
fastapi==0.165.0
Flask==3.1.3
flask-cors==6.0.5
fonttools==4.68.0
frozenlist==1.8.0
gitdb==4.0.12
GitPython==3.2.1
google-auth==2.63.0
graphene==3.4.3
graphql-core==3.2.14
graphql-relay==3.2.0
gunicorn==26.2.0
h11==0.16.0
huey==3.5.4
idna==3.20
importlib_metadata==9.1.0
itsdangerous==2.2.0
Jinja2==3.1.6
joblib==1.6.0
kiwisolver==1.5.1
Mako==1.4.3
MarkupSafe==3.0.4
matplotlib==3.11.2
mlflow==3.17.2
mlflow-skinny==3.17.2
mlflow-tracing==3.17.2
multidict==7.2.1
narwhals==2.29.0
numpy==2.4.6
opentelemetry-api==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
packaging==26.4
pandas==3.1.1
pillow==13.0.0
prettytable==3.19.0
propcache==0.5.4
protobuf==7.36.2
pyarrow==25.0.1
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
PyYAML==6.0.4
requests==2.34.2
scikit-learn==1.9.1
scipy==1.17.1
six==1.17.0
skops==0.16.0
smmap==5.0.3
SQLAlchemy==2.1.9
sqlparse==0.6.1
starlette==1.10.0
threadpoolctl==3.8.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.55.0
wcwidth==0.9.4
Werkzeug==3.1.9
yarl==1.25.1
zipp==4.1.2
PINS
)

# install NAME REQUIREMENT CONSTRAINTS
install() {
    local name=$1 requirement=$2 constraints=$3
    local venv=$DIR/$name
    local wanted
    wanted=$(printf '%s\n%s\n' "$requirement" "$constraints")
    if [[ -f $venv/.installed && "$(cat "$venv/.installed")" == "$wanted" ]]; then
        echo "$name: up to date in $venv"
        return 0
    fi
    echo "$name: installing $requirement into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    printf '%s\n' "$constraints" >"$venv/constraints.txt"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --constraint "$venv/constraints.txt" "$requirement"
    printf '%s\n' "$wanted" >"$venv/.installed"
    echo "$name: done"
}

mkdir -p "$DIR"
install prefect "$PREFECT_REQUIREMENT" "$PREFECT_CONSTRAINTS" &
prefect=$!
install airflow "$AIRFLOW_REQUIREMENT" "$AIRFLOW_CONSTRAINTS" &
airflow=$!
install mlflow "$MLFLOW_REQUIREMENT" "$MLFLOW_CONSTRAINTS" &
mlflow=$!
status=0
wait "$prefect" || status=1
wait "$airflow" || status=1
wait "$mlflow" || status=1
exit $status
