# The two commands of the README:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch pinned exactly (a bare `torch` requirement would pull a multi-GB CUDA build). Where pip resolves it to
# the CUDA build, `make TORCH_INDEX=https://download.pytorch.org/whl/cpu ...` takes the CPU wheel from
# PyTorch's own index.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test fuzz clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/tacoglow synthesize "Hello world" -o hello.wav

# The web page's browser test drives Debian's Chromium (headless).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

test: $(BIN)/.installed $(CHROMIUM)
	TACOGLOW_OFFLINE=1 $(BIN)/python -m pytest

# Text front-end fuzzing: 5 properties x 2,500 generated cases, per-case time limit.
fuzz: $(BIN)/.installed
	TACOGLOW_FUZZ_EXAMPLES=2500 $(BIN)/python -m pytest -s tests/test_text_fuzz.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache hello.wav
