# The README commands. Each installs what it needs into ./.venv first (scripts/bootstrap.sh).
PY := .venv/bin/python
ARGS ?= -q

.PHONY: demo test docs-test install
install:
	bash scripts/bootstrap.sh

demo: install
	$(PY) -m pyserini_llama.pipeline $(DEMO_ARGS)

test: install
	$(PY) -m pytest $(ARGS)

# every command of README.md and docs/*.md, on toy collections and tiny checkpoints (tests/test_docs.py)
docs-test: install
	$(PY) -m pytest $(ARGS) tests/test_docs.py
