# Thin wrapper over Meson: the two commands of the quick start, plus a few conveniences.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps deps-build demo check check-sanitize bench clean format

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

# Installs the Debian packages listed in scripts/deps.txt (only the missing ones).
deps-build:
	scripts/install-deps.sh build

deps:
	scripts/install-deps.sh test

# Boot the built-in demo guest: it prints what it finds and powers off.
demo: deps-build all
	$(BUILD)/src/cli/vmkit run -m 256M -smp 2

# Every test: unit, guests under vmkit (and under QEMU as a cross-check), images against qemu-img.
# Reconfigure first: a tree set up by make demo was configured before cmocka was installed.
check: deps
	if [ -f $(BUILD)/build.ninja ]; then meson setup --reconfigure $(BUILD) $(MESON_OPTS); \
	else meson setup $(BUILD) $(MESON_OPTS); fi
	ninja -C $(BUILD)
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
