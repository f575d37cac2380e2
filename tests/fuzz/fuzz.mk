# tests/fuzz/fuzz.mk -- libFuzzer harnesses for tlsgate (needs clang and
# Debian's libclang-rt-14-dev, which ships libclang_rt.fuzzer).
#
# Works two ways:
#   include tests/fuzz/fuzz.mk             at the end of GNUmakefile: `make fuzz`
#   make -f tests/fuzz/fuzz.mk fuzz        standalone (tests/fuzz/run.sh does this)
# Honours TLS (boringssl | openssl), BUILD, BSSL_INC and BSSL_LIB like
# GNUmakefile.  Output: $(BUILD)/fuzz/fuzz_NAME (BoringSSL) or
# $(BUILD)/fuzz/openssl/fuzz_NAME.  The proxy sources are compiled again
# with clang, coverage instrumentation and ASan/UBSan into .../objs/, and
# every harness links them all except main.o.
#
# fuzz_proxy_parse is built only once proxy/tcp/proxyproto.h declares
# tg_proxy_parse (the PROXY header parser); until then it is left out.

TLS      ?= boringssl
BUILD    ?= build
BSSL_INC ?= /usr/include/android
BSSL_LIB ?= /usr/lib/x86_64-linux-gnu/android
FUZZ_CC  ?= clang
P11_CFLAGS ?= -I/usr/include/p11-kit-1

ifeq ($(TLS),openssl)
  FUZZ_OUT        := $(BUILD)/fuzz/openssl
  FUZZ_TLS_CFLAGS :=
  FUZZ_TLS_LIBS   := -lssl -lcrypto
else
  FUZZ_OUT        := $(BUILD)/fuzz
  FUZZ_TLS_CFLAGS := -I$(BSSL_INC)
  FUZZ_TLS_LIBS   := -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto
endif

FUZZ_PROXY_DIRS := proxy/daemon proxy/tcp proxy/udp proxy/session proxy/tls proxy/util
FUZZ_PROXY_INC  := $(addprefix -I,$(FUZZ_PROXY_DIRS))
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=all \
               -fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
               -fno-strict-aliasing -D_GNU_SOURCE -DTG_VERSION='"fuzz"' \
               $(FUZZ_PROXY_INC) $(FUZZ_TLS_CFLAGS) $(P11_CFLAGS) $(FUZZ_SAN) -MMD -MP
FUZZ_LIBS   := $(FUZZ_TLS_LIBS) -luv -linih -lpthread

FUZZ_LIB_OBJS := $(addprefix $(FUZZ_OUT)/objs/,$(notdir $(patsubst %.c,%.o,\
                   $(filter-out proxy/daemon/main.c,$(wildcard $(addsuffix /*.c,$(FUZZ_PROXY_DIRS)))))))
vpath %.c $(FUZZ_PROXY_DIRS)
FUZZ_HAVE_PROXY_PARSE := $(shell grep -qs 'tg_proxy_parse' proxy/tcp/proxyproto.h && echo yes)
FUZZ_NAMES := config tls_server acl dgram http $(if $(FUZZ_HAVE_PROXY_PARSE),proxy_parse)
FUZZ_BINS  := $(FUZZ_NAMES:%=$(FUZZ_OUT)/fuzz_%)

.PHONY: fuzz fuzz-names
fuzz: $(FUZZ_BINS)

# Named here so that make keeps the objects between runs (no rebuild).
$(FUZZ_BINS): $(FUZZ_LIB_OBJS)
.SECONDARY: $(FUZZ_LIB_OBJS)

# What `make fuzz` builds, one name per word (tests/fuzz/run.sh reads it).
fuzz-names:
	@echo $(FUZZ_NAMES)

$(FUZZ_OUT)/objs/%.o: %.c | $(FUZZ_OUT)/objs
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS) | $(FUZZ_OUT)/objs
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) $(FUZZ_LIBS)

$(FUZZ_OUT)/objs:
	mkdir -p $@

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:=.d)
