# kiln — build, test and benchmark.  Everything is built into build/; slow artefacts (guest
# kernel, root images, the test host's kernel) are cached by content hash under $(KILN_CACHE).
#
#   make            programs
#   make test       every test: unit (plain and under ASan/UBSan), then VM tests on a real guest
#   make demo       kiln's main job end to end: boot a microVM and run a command in it
#   make bench      benchmarks (print tables; never pass/fail on time)
#   make images     root images for sandboxes, build/images/NAME.ext4 (docs/images.md)

CC      ?= cc
CFLAGS  ?= -O2 -g
# snprintf truncating a path or message is deliberate wherever we use it; the warning is noise.
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -pthread -MMD -MP
LDFLAGS += -pthread
SANITIZE = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

KILN_CACHE ?= /var/cache/kiln
# In the emulated test host a guest under load is sometimes lost to the emulator (a triple
# fault, docs/testing.md): a VM test whose failure looks like that runs once more, and the
# summary counts it as rerun.  A failure that repeats, or any other failure, fails.
VM_RERUN = --reruns 1 --only-rerun 'triple fault|closed before OK|guest agent did not answer|connection to the guest agent lost|VM stopped while'
export KILN_CACHE

B := build

COMMON_SRC := $(wildcard src/common/*.c)
VMM_SRC    := $(wildcard src/vmm/*.c src/vmm/x86/*.c src/vmm/devices/*.c src/vmm/virtio/*.c \
		src/vmm/snapshot/*.c)
VMM_LIB    := $(filter-out src/vmm/main.c,$(VMM_SRC)) $(COMMON_SRC)
PROTO_SRC  := $(wildcard src/proto/*.c)
GUEST_SRC  := $(wildcard src/guest/*.c)
CLIENT_SRC := $(wildcard src/client/*.c)
CLI_SRC    := $(wildcard src/cli/*.c)
HOST_SRC   := $(wildcard src/host/*.c)
KILND_SRC  := $(wildcard src/kilnd/*.c)
# kilnd's pure parts (no sockets, no VMs), linked into its unit tests.
KILND_LIB  := src/kilnd/router.c src/kilnd/json.c src/kilnd/ledger.c src/kilnd/api_parse.c \
	      src/kilnd/code_json.c src/kilnd/multipart.c src/kilnd/network.c
KILND_LIBS := -lmicrohttpd -ljansson -lsqlite3 -lcrypto
# Egress policy and DNS wire format, shared by kiln-dns and its unit tests (test_egress_*).
NET_LIB    := src/net/dns_msg.c src/net/egress_policy.c src/net/sniff.c src/net/listen_in_netns.c \
	      src/net/secrets.c src/net/relay.c src/net/text_file.c src/net/http_framing.c
# What the host programs (kiln, kilnd) share with them: checking a sandbox's secrets file.
HOST_NET   := src/net/secrets.c src/net/egress_policy.c src/net/text_file.c
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
# The guest's virtio driver the device tests play (tests/unit/fake_driver.h).
UNIT_LIB   := tests/unit/fake_driver.c
TEST_GUEST_BINS := $(patsubst tests/guest/%.c,$(B)/tests/guest/%,$(wildcard tests/guest/*.c))
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
ASAN_BINS  := $(UNIT_SRC:tests/unit/%.c=$(B)/asan/tests/%)

obj      = $(1:%.c=$(B)/obj/%.o)
asan_obj = $(1:%.c=$(B)/asan/obj/%.o)

.SECONDARY:
.PHONY: all programs kernel unit test-guest-bins test test-unit test-agent test-host test-vm demo bench clean
all: programs kernel
programs: $(B)/kiln $(B)/kilnd $(B)/kiln-vmm $(B)/kiln-init $(B)/kiln-initrd.cpio $(B)/bench/boot-init \
	  $(B)/bench/exec-client $(B)/kiln-dns $(B)/kiln-proxy $(B)/kiln-ingress

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/asan/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANITIZE) -c $< -o $@

$(B)/kiln-vmm: $(call obj,$(VMM_SRC) $(COMMON_SRC))
	$(CC) $(LDFLAGS) $^ -o $@

$(B)/tests/%: $(call obj,tests/unit/%.c $(UNIT_LIB) $(VMM_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lcmocka -o $@

$(B)/asan/tests/%: $(call asan_obj,tests/unit/%.c $(UNIT_LIB) $(VMM_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(SANITIZE) $^ -lcmocka -o $@

# kilnd's unit tests link its pure parts and jansson instead of the VMM.
$(B)/tests/test_kilnd_%: $(call obj,tests/unit/test_kilnd_%.c $(KILND_LIB) $(NET_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lcmocka -ljansson -o $@

$(B)/asan/tests/test_kilnd_%: $(call asan_obj,tests/unit/test_kilnd_%.c $(KILND_LIB) $(NET_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(SANITIZE) $^ -lcmocka -ljansson -o $@

$(B)/tests/test_egress_%: $(call obj,tests/unit/test_egress_%.c $(NET_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lcmocka -o $@

# Named as targets so the pattern rules below may build them (make does not chain implicit
# rules through prerequisites it has not seen named).
$(call asan_obj,$(NET_LIB) $(KILND_LIB)) $(call obj,$(NET_LIB) $(KILND_LIB)):

$(B)/asan/tests/test_egress_%: $(call asan_obj,tests/unit/test_egress_%.c $(NET_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(SANITIZE) $^ -lcmocka -o $@

# The DNS policy resolver of sandboxes with a network (docs/network.md).
$(B)/kiln-dns: $(call obj,$(NET_LIB) src/net/kiln_dns.c)
	$(CC) $(LDFLAGS) $^ -o $@

# A guest port exposed on a host address (docs/egress.md).
$(B)/kiln-ingress: $(call obj,$(NET_LIB) src/net/kiln_ingress.c)
	$(CC) $(LDFLAGS) $^ -o $@

# The transparent egress proxy of sandboxes with a network (docs/egress.md).
$(B)/kiln-proxy: $(call obj,$(NET_LIB) src/net/kiln_proxy.c src/net/tls_intercept.c)
	$(CC) $(LDFLAGS) $^ -lssl -lcrypto -o $@

# The network policy's and the namespace pool's pure halves (src/host/netns*.c) need nothing
# else.
NETNS_LIB := src/host/netns.c src/host/netns_pool.c
$(B)/tests/test_netns: $(call obj,tests/unit/test_netns.c $(NETNS_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -lcmocka -o $@

$(B)/asan/tests/test_netns: $(call asan_obj,tests/unit/test_netns.c $(NETNS_LIB))
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(SANITIZE) $^ -lcmocka -o $@

# Drives the namespace pool for tests/host/test_netns_pool.py, bench/netns and test_net.py
# (root); boots VMs with vmctl like kilnd.
$(B)/tests/netns-pool: $(call obj,tests/host/netns_pool_tool.c $(HOST_SRC) $(HOST_NET) \
			$(CLIENT_SRC) $(PROTO_SRC) src/common/sparse_file.c)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -ljansson -o $@

$(B)/kiln: $(call obj,$(CLI_SRC) $(HOST_SRC) $(HOST_NET) $(CLIENT_SRC) $(PROTO_SRC) \
		     src/common/sparse_file.c)
	$(CC) $(LDFLAGS) $^ -ljansson -o $@

# The sandbox service (docs/kilnd.md); NET_LIB holds HOST_NET.
$(B)/kilnd: $(call obj,$(KILND_SRC) $(HOST_SRC) $(CLIENT_SRC) $(PROTO_SRC) $(COMMON_SRC) $(NET_LIB))
	$(CC) $(LDFLAGS) $^ $(KILND_LIBS) -o $@

# kiln-init runs as PID 1 in every guest, from an initramfs of its own, so root images need
# nothing of kiln's inside them.  Static: the initramfs holds nothing else.
$(B)/kiln-init: $(call obj,$(GUEST_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) -static $^ -o $@

# The interpreter scripts of code contexts are compiled into kiln-init (src/guest/kernels.c).
KERNEL_SCRIPTS := $(wildcard src/guest/context/*.py src/guest/context/*.js)
$(call obj,src/guest/kernels.c) $(call asan_obj,src/guest/kernels.c): $(KERNEL_SCRIPTS)

# The agent again, dynamically linked with ASan/UBSan, for the host-side agent tests.
$(B)/asan/kiln-init: $(call asan_obj,$(GUEST_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) $(SANITIZE) $^ -o $@

$(B)/kiln-initrd.cpio: $(B)/kiln-init
	rm -rf $(B)/initrd-root && mkdir -p $(B)/initrd-root
	cp $< $(B)/initrd-root/init
	cd $(B)/initrd-root && echo init | cpio -o -H newc -R 0:0 --quiet > ../kiln-initrd.cpio

# Runs as PID 1 in a guest: static, so the initramfs needs nothing else.
$(B)/bench/boot-init: bench/boot-init.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -static $< -o $@

# Helpers the VM tests copy into their guests' root disks: static, like boot-init.
# (and the host-side namespace pool driver tests/integration/test_net.py uses)
test-guest-bins: $(TEST_GUEST_BINS) $(B)/tests/netns-pool
$(TEST_GUEST_BINS): $(B)/tests/guest/%: tests/guest/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -static $< -o $@

$(B)/bench/exec-client: $(call obj,bench/exec-client.c $(CLIENT_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) $^ -o $@

# Root images from images/NAME/recipe, cached by recipe hash (docs/images.md).  Each build
# checks the cache itself, so these always run the script; a hit costs nothing.
IMAGES := base python
.PHONY: images $(IMAGES:%=image-%)
images: $(IMAGES:%=image-%)
$(IMAGES:%=image-%):
	images/build $(@:image-%=%) $(B)/images/$(@:image-%=%).ext4

# The guest kernel: built once per configuration, shared by every clone through the cache.
kernel: $(B)/vmlinux
$(B)/vmlinux: guest/kernel/kiln.config guest/kernel/build
	guest/kernel/build $@

unit: $(UNIT_BINS) $(ASAN_BINS)

test-unit: unit
	@set -e; for t in $(UNIT_BINS) $(ASAN_BINS); do echo "== $$t"; $$t; done

# The agent and client on this host, no VM: the agent serves a unix socket.
test-agent: programs $(B)/asan/kiln-init
	KILN_TEST_AGENT=$(B)/asan/kiln-init /usr/bin/python3 -m pytest -q tests/agent

# VM tests boot real guests; tests/vmhost/run decides whether they need the emulated test host.
# run-suite runs them as groups of files, each group in a test host of its own.
test-vm: programs kernel test-guest-bins images
	tests/integration/run-suite $(VM_RERUN)

# Host-side network pieces, no VM: kiln-dns on loopback and in a network namespace.
test-host: $(B)/kiln-dns $(B)/kiln-proxy $(B)/kiln-ingress $(B)/tests/netns-pool
	/usr/bin/python3 -m pytest -q tests/host

test: test-unit test-agent test-host test-vm

demo: programs kernel image-python
	tests/vmhost/maybe-run -- scripts/demo

bench: programs kernel images
	tests/vmhost/maybe-run -- sh -c 'bench/boot && bench/exec && bench/restore && bench/code'
	bench/proxy

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
