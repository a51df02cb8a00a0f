# The two commands of the README:  `make demo`  and  `make test`  (`make lint` is its first half).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch pinned exactly (a bare `torch` requirement would pull a multi-GB CUDA build). Where pip resolves it to
# the CUDA build, `make TORCH_INDEX=https://download.pytorch.org/whl/cpu ...` takes the CPU wheel from
# PyTorch's own index.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo lint test fuzz clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/tacoglow synthesize "Hello world" -o hello.wav

# The web page's browser test drives Debian's Chromium (headless). `make test` installs it with apt-get as
# root or through sudo without a password; where it cannot, it says so and goes on: the browser test is then
# reported as skipped, with the reason, in pytest's summary (-rs), except with CI=true, where it fails.
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	@if [ -n "$$TACOGLOW_CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
	    exit 0; \
	elif ! command -v apt-get >/dev/null; then \
	    echo "make: Chromium not installed (no apt-get): the browser test will be skipped"; \
	elif [ "$$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then \
	    echo "make: Chromium not installed (not root, and sudo needs a password): the browser test will be skipped"; \
	else \
	    sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium \
	        || echo "make: installing Chromium failed: the browser test will be skipped"; \
	fi

# Lint (ruff: pyflakes, pycodestyle, import order) and type-check (mypy); settings in pyproject.toml.
lint: $(BIN)/.installed
	$(BIN)/ruff check tacoglow tests benchmarks
	$(BIN)/mypy

test: $(BIN)/.installed lint $(CHROMIUM)
	TACOGLOW_OFFLINE=1 $(BIN)/python -m pytest -rs

# Text front-end fuzzing: 5 properties x 2,500 generated cases, per-case time limit.
fuzz: $(BIN)/.installed
	TACOGLOW_FUZZ_EXAMPLES=2500 $(BIN)/python -m pytest -s tests/test_text_fuzz.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache hello.wav
