# edge-rbmlp: every set-up step a fresh machine needs lives here.
#   make run    device venv (.venv), install, serve the bundled models
#   make test   test venv (.venv-test, with the train + test extras), fetch data, run the suite
#   make soak   load test, 100k-inference soak and worker scaling of the real service (benchmarks/load_test.py)

PYTHON     ?= python3
VENV       ?= .venv
TEST_VENV  ?= .venv-test
PIP_FLAGS  ?= -q --disable-pip-version-check
PYTEST_ARGS ?=
RUN_ARGS   ?=

SOURCES := pyproject.toml setup.py $(shell find edge_rbmlp native -type f \( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' -o -name '*.rbm' -o -name '*.tflite' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) 2>/dev/null)

.PHONY: run test venv test-venv data models ood-fonts train-fonts mqtt-broker clean test-asan test-arm test-armv7 browser systemd-tools soak load-client

venv: $(VENV)/.installed
test-venv: $(TEST_VENV)/.installed

$(VENV)/.installed: $(SOURCES)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -U pip
	$(VENV)/bin/pip install $(PIP_FLAGS) .
	touch $@

$(TEST_VENV)/.installed: $(SOURCES)
	test -x $(TEST_VENV)/bin/python || $(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -U pip "setuptools>=77"
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -e '.[train,lce,tflite,test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/edge-rbmlp serve $(RUN_ARGS)

data: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python -m train data fetch

test: $(TEST_VENV)/.installed data browser systemd-tools ood-fonts train-fonts mqtt-broker
	$(TEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Debian packages the device-app tests use: headless Chromium for the web page (driven by
# Playwright with the system browser) and systemd-analyze for the unit. Installed only when missing.
APT_INSTALL = sh -c 'if [ "$$(id -u)" != 0 ]; then echo "make: not root, cannot apt-get install $$*: the tests that need it will skip"; exit 0; fi; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$$@"' apt-install

browser:
	@test -x /usr/bin/chromium || $(APT_INSTALL) chromium

systemd-tools:
	@command -v systemd-analyze >/dev/null || $(APT_INSTALL) systemd

# a real MQTT broker (and mosquitto_sub) for tests/test_mqtt.py, which starts its own on a free loopback port
mqtt-broker:
	@dpkg -s mosquitto mosquitto-clients >/dev/null 2>&1 || $(APT_INSTALL) mosquitto mosquitto-clients

# fonts for the out-of-distribution digit sets of `python -m train ood-eval` (train/ood.py: printed and
# handwriting-like faces beside matplotlib's own); installed only when missing
OOD_FONTS = fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35 \
	fonts-comic-neue fonts-humor-sans fonts-dkg-handwriting fonts-breip fonts-femkeklaver fonts-rufscript \
	fonts-kaushanscript fonts-bwht fonts-dseg
ood-fonts:
	@dpkg -s $(OOD_FONTS) >/dev/null 2>&1 || $(APT_INSTALL) $(OOD_FONTS)

# fonts the printed-digit augmentation renders from (`python -m train fit --printed-fraction`,
# train/augment.py TRAIN_PRINT_FONTS / TRAIN_DISPLAY_FONTS): disjoint from the ood-fonts faces
# (tests/test_augment.py checks it); fonts-dseg's Classic styles train, its Modern ones are ood-eval's
TRAIN_FONTS = fonts-roboto-unhinted fonts-open-sans fonts-lato fonts-crosextra-carlito fonts-crosextra-caladea \
	fonts-linuxlibertine fonts-inconsolata fonts-firacode fonts-cantarell fonts-jetbrains-mono fonts-sil-gentium \
	fonts-oxygen fonts-league-spartan fonts-quicksand fonts-anonymous-pro fonts-b612 fonts-adf-accanthis fonts-dseg
train-fonts:
	@dpkg -s $(TRAIN_FONTS) >/dev/null 2>&1 || $(APT_INSTALL) $(TRAIN_FONTS)

# wrk: a C load generator for the worker-scaling figure of `make soak` (a Python client would
# take the cores the server needs)
load-client:
	@command -v wrk >/dev/null || $(APT_INSTALL) wrk

# load (concurrency 1/8/64, both models), a 100k-inference soak with the RSS sampled, the 1 -> 2
# worker speed-up, and the service against the reference services (benchmarks/reference_services/:
# the smallest Flask app, Flask + ai-edge-litert int8) side by side, all on loopback; writes
# benchmarks/results/load.json, fails on any error or leak; then the hostile-client suite ten times
# longer (tests/test_hostile.py; figures in benchmarks/results/hostile.jsonl)
soak: $(TEST_VENV)/.installed load-client
	$(TEST_VENV)/bin/python benchmarks/load_test.py --requests 5000 --soak 100000 --compare --out benchmarks/results/load.json
	EDGE_RBMLP_HOSTILE_SCALE=10 EDGE_RBMLP_HOSTILE_FIGURES=benchmarks/results/hostile.jsonl \
		$(TEST_VENV)/bin/python -m pytest -q -s tests/test_hostile.py

clean:
	rm -rf $(VENV) $(TEST_VENV) build dist *.egg-info

# aarch64: cross-build the wheel and run the engine tests under qemu-aarch64 on the Pi cores
# (cortex-a53, a72, a76), forcing each kernel variant; caches under ~/.cache/edge-rbmlp/arm
test-arm:
	bash native/arm/test-arm.sh

# the native engine's tests against an AddressSanitizer + UBSan build of the extension
test-asan: $(TEST_VENV)/.installed
	bash native/asan/test-asan.sh $(TEST_VENV)/bin/python

# Retrain the two bundled default models on the real data (deterministic for the seed) and
# copy them into edge_rbmlp/models/ (variant choice and measurements: train/README.md)
models: $(TEST_VENV)/.installed data train-fonts
	$(TEST_VENV)/bin/python -m train fit --dataset mnist --arch "B-D256N,D64N,PN" --input-mode planes --input-bits 2 --seed 0 --epochs 40 --lr-schedule cosine --augment digits --augment-fraction 0.25 --printed-fraction 0.1 --display-share 0.3 --printed-redraw 5 --out build/models/mnist
	$(TEST_VENV)/bin/python -m train bundle build/models/mnist --name mnist
	$(TEST_VENV)/bin/python -m train fit --dataset imdb --arch "B-32,16,4,Q" --input-mode sign --seed 0 --epochs 3 --augment text --augment-fraction 0.75 --out build/models/imdb
	$(TEST_VENV)/bin/python -m train bundle build/models/imdb --name imdb

# the same for 32-bit Raspberry Pi OS (armhf, qemu-arm -cpu cortex-a7 / max: portable and neon;
# cortex-a7,neon=off: an ARMv7 without NEON, portable chosen at run time)
test-armv7:
	ARM_ARCH=armv7 bash native/arm/test-arm.sh

# the wheels for 64-bit and 32-bit Raspberry Pi OS (aarch64, armv7l) and x86_64 into dist/, each
# retagged manylinux by auditwheel (`auditwheel show` must accept it) and tested: x86_64 installed
# offline into a fresh venv with no compiler, the ARM ones under qemu as make test-arm / test-armv7 do
.PHONY: wheels
wheels:
	bash native/arm/wheels.sh
