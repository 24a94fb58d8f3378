# Thin wrapper over Meson: the two commands of the quick start, plus a few conveniences.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps demo check check-sanitize bench clean format

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

# Installs the Debian packages listed in scripts/deps.txt (only the missing ones).
deps:
	scripts/install-deps.sh

# Boot the built-in demo guest: it prints what it finds and powers off.
demo: deps all
	$(BUILD)/src/cli/vmkit run -m 256M -smp 2

# Every test: unit, guests under vmkit (and under QEMU as a cross-check), images against qemu-img.
check: deps all
	scripts/run-tests.sh $(BUILD)

# The unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
check-sanitize: deps
	[ -f $(BUILD)-sanitize/build.ninja ] || meson setup $(BUILD)-sanitize -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(BUILD)-sanitize
	scripts/run-tests.sh $(BUILD)-sanitize --suite unit

bench: deps all
	bench/run-all.sh $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-sanitize
