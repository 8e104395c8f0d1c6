# Holdfast: the two commands a newcomer runs on a fresh Debian machine are `make demo` and `make test`.
# Both install what is missing first: Debian packages with apt-get, Python packages into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Test files run two at a time (pytest-xdist, one file per worker): most tests wait on real-time
# recording, servers and browsers rather than compute, so two overlap well on two cores.
TEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Media, the RTSP test server (GStreamer from Debian, run by Debian's python3; -bad for its H.265
# camera: x265enc), audio without a
# sound card, PostgreSQL for the scale-out index tests, Chromium for the web page tests; systemd,
# git and util-linux (unshare, nsenter, runuser) for `make install` and the boot test
# (tests/test_systemd_boot.py boots systemd as PID 1 in a namespace and runs `make install` there);
# Ceph (mon, memstore OSD, radosgw) for the S3 store tests on a real RGW with Object Lock; wrk
# (a C HTTP load generator) for bench/api.py's concurrent searches.
APT_PACKAGES := ffmpeg python3-venv python3-dev gcc git util-linux \
	gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-tools \
	portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins alsa-utils sox espeak-ng \
	postgresql-15 chromium systemd wrk \
	ceph-mon ceph-osd radosgw ceph-common

.PHONY: help deps apt venv test test-fast demo lint format bench clean install uninstall vendor screenshot

help:
	@echo "make demo   install what is missing and run the whole appliance on embedded defaults"
	@echo "make test   install what is missing and run the test suite"
	@echo "make lint   ruff check + format check;  make bench  run the benchmarks"
	@echo "make install   copy to $(PREFIX), venv from /usr/bin/python3 in $(PREFIX)/.venv, then \`holdfast install\` (user, dirs, keys, units)"

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
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

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

# The README's picture of the page, made by the page test (Chromium, generated footage).
screenshot: venv
	HOLDFAST_SCREENSHOT=$(CURDIR)/docs/screenshot.png $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_api_browser.py -k test_timeline_thumbnails_keyboard_and_watermark

# Browser libraries from npm at pinned versions (no CDN): `make vendor` refreshes api/static/vendor/
# (what the page ships) and tests/vendor/ (axe-core, for the accessibility test), each with its
# licence and a SHA256SUMS of what is there.
HLSJS_VERSION := 1.5.20
AXE_VERSION := 4.10.3
vendor:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && cd $$tmp && \
	npm pack -q hls.js@$(HLSJS_VERSION) >/dev/null && tar xzf hls.js-$(HLSJS_VERSION).tgz && \
	cp package/dist/hls.min.js $(CURDIR)/api/static/vendor/hls.min.js && \
	cp package/LICENSE $(CURDIR)/api/static/vendor/hls.js.LICENSE && rm -rf package
	cd api/static/vendor && sha256sum *.js > SHA256SUMS
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && cd $$tmp && \
	npm pack -q axe-core@$(AXE_VERSION) >/dev/null && tar xzf axe-core-$(AXE_VERSION).tgz && \
	cp package/axe.min.js $(CURDIR)/tests/vendor/axe.min.js && \
	cp package/LICENSE $(CURDIR)/tests/vendor/axe-core.LICENSE && rm -rf package
	cd tests/vendor && sha256sum *.js > SHA256SUMS

# The box: the source tree (tracked files) in $(PREFIX), its own venv, then `holdfast install`
# (system user, directories, keys, /etc/holdfast/holdfast.toml, index, units enabled).
# The venv is built from Debian's /usr/bin/python3, never from PATH's python3: the units run as
# the `holdfast` system user, which must be able to execute the interpreter the venv links to
# (a pyenv or ~/.local build under a 0700 home fails every unit with status=203/EXEC).
# umask 022: the holdfast user reads the venv and the tree; nothing under $(PREFIX) is secret.
PREFIX ?= /opt/holdfast
BOX_PYTHON := /usr/bin/python3
install: apt
	@test -x $(BOX_PYTHON) || { echo "$(BOX_PYTHON) missing: apt-get install python3 python3-venv" >&2; exit 1; }
	umask 022 && $(SUDO) mkdir -p $(PREFIX)
	umask 022 && { git ls-files -z | $(SUDO) rsync -a --from0 --files-from=- ./ $(PREFIX)/ 2>/dev/null || \
		git ls-files -z | xargs -0 $(SUDO) cp -P --parents -t $(PREFIX); }
	umask 022 && $(SUDO) $(BOX_PYTHON) -m venv $(PREFIX)/.venv
	umask 022 && $(SUDO) $(PREFIX)/.venv/bin/pip install -q --upgrade --no-warn-script-location $(PREFIX)
	cd / && $(SUDO) $(PREFIX)/.venv/bin/holdfast install

uninstall:
	$(SUDO) $(PREFIX)/.venv/bin/holdfast uninstall

clean:
	rm -rf $(VENV) demo-data test-artifacts .pytest_cache
