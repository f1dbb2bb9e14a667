# `make run` and `make test` work on a fresh machine: both set everything up first.
PY      := .venv/bin/python
STAMP   := .venv/.installed
DEBS    := chromium firefox-esr espeak-ng festival festvox-kallpc16k festvox-us-slt-hts
AVATAR  := avatars/default/avatar.json

.PHONY: setup run test bench clean

setup: $(STAMP) $(AVATAR)

$(STAMP): pyproject.toml
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

$(AVATAR): | $(STAMP)
	$(PY) -m engine build-avatar --builtin --out avatars/default

run: setup
	$(PY) run_server.py

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench all

clean:
	rm -rf .venv
