# The whole developer interface. Every target installs what it needs first (scripts/setup).
.PHONY: setup run test check bench clean

setup:
	scripts/setup

run: setup
	.venv/bin/wipwatch up

test: setup
	scripts/test

check: setup
	scripts/check

bench: setup
	@for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .wipwatch artifacts bench/results
