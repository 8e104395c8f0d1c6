# Holdfast: the two commands a newcomer runs on a fresh Debian machine are `make demo` and `make test`.
# Both install what is missing first: Debian packages with apt-get, Python packages into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Media, the RTSP test server (GStreamer from Debian, run by Debian's python3; -bad for its H.265
# camera: x265enc), audio without a
# sound card, PostgreSQL for the scale-out index tests, Chromium for the web page tests, Ceph
# (mon, memstore OSD, radosgw) for the S3 store tests on a real RGW with Object Lock.
APT_PACKAGES := ffmpeg python3-venv python3-dev gcc \
	gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-tools \
	portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins alsa-utils sox espeak-ng \
	postgresql-15 chromium systemd \
	ceph-mon ceph-osd radosgw ceph-common

.PHONY: help deps apt venv test test-fast demo lint format bench clean install uninstall

help:
	@echo "make demo   install what is missing and run the whole appliance on embedded defaults"
	@echo "make test   install what is missing and run the test suite"
	@echo "make lint   ruff check + format check;  make bench  run the benchmarks"
	@echo "make install   copy to $(PREFIX), venv in $(PREFIX)/.venv, then \`holdfast install\` (user, dirs, keys, units)"

deps: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -x -p no:cacheprovider -m "not slow"

demo: deps
	$(PY) -m cli.main demo --dir demo-data

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: venv
	$(PY) bench/seal.py

# The box: the source tree (tracked files) in $(PREFIX), its own venv, then `holdfast install`
# (system user, directories, keys, /etc/holdfast/holdfast.toml, index, units enabled).
PREFIX ?= /opt/holdfast
install: apt
	$(SUDO) mkdir -p $(PREFIX)
	git ls-files -z | $(SUDO) rsync -a --from0 --files-from=- ./ $(PREFIX)/ 2>/dev/null || \
		git ls-files -z | xargs -0 $(SUDO) cp --parents -t $(PREFIX)
	$(SUDO) $(PYTHON) -m venv $(PREFIX)/.venv
	$(SUDO) $(PREFIX)/.venv/bin/pip install -q $(PREFIX)
	$(SUDO) $(PREFIX)/.venv/bin/holdfast install

uninstall:
	$(SUDO) $(PREFIX)/.venv/bin/holdfast uninstall

clean:
	rm -rf $(VENV) demo-data test-artifacts .pytest_cache
