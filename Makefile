# The two README commands. Both install what they need into ./.venv first (scripts/bootstrap.sh).
PY := .venv/bin/python
ARGS ?= -q

.PHONY: demo test install
install:
	bash scripts/bootstrap.sh

demo: install
	$(PY) -m pyserini_llama.pipeline $(DEMO_ARGS)

test: install
	$(PY) -m pytest $(ARGS)
