/* Linux x86 boot protocol (Documentation/arch/x86/boot.rst): load a bzImage, fill the zero page,
 * enter at the 64-bit entry point when the kernel has one, else the 32-bit one. */
#include "base/log.h"
#include "base/util.h"
#include "machine/boot.h"
#include "machine/layout.h"
#include <errno.h>
#include <string.h>

/* Offsets in the zero page (struct boot_params) and its setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE 0x0C4
#define BP_EXT_CMD_LINE_PTR 0x0C8
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_E820_ENTRIES 0x1E8
#define BP_SETUP_HEADER 0x1F1
#define BP_E820_TABLE 0x2D0
#define BP_E820_MAX 128
#define HDR_SETUP_SECTS 0x1F1
#define HDR_VID_MODE 0x1FA
#define HDR_JUMP 0x200
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21C
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22C
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260

#define LOADFLAG_LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

int boot_load_bzimage(struct guest_mem *m, const struct boot_request *req, struct boot_info *out)
{
    const uint8_t *k = req->kernel;
    const char *name = req->kernel_name;
    uint16_t version = rd16(k + HDR_VERSION);
    if (version < 0x0206) {
        log_error("%s: Linux boot protocol %u.%02u is too old; vmkit needs 2.06 or newer "
                  "(Linux 2.6.22+)", name, version >> 8, version & 0xFF);
        return -ENOEXEC;
    }
    if (!(k[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH)) {
        log_error("%s: a zImage (loaded low) is not supported; use a bzImage", name);
        return -ENOEXEC;
    }
    unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
    size_t setup_size = (size_t)(setup_sects + 1) * 512;
    if (setup_size >= req->kernel_len) {
        log_error("%s: truncated bzImage: the setup code (%zu bytes) fills the whole file", name,
                  setup_size);
        return -ENOEXEC;
    }
    const uint8_t *pm = k + setup_size;
    size_t pm_len = req->kernel_len - setup_size;

    uint64_t load = LAYOUT_HIGH_MEM;
    uint64_t mem_need = pm_len;
    if (version >= 0x020A) {
        uint64_t pref = rd64(k + HDR_PREF_ADDRESS);
        uint32_t init_size = rd32(k + HDR_INIT_SIZE);
        if (init_size > mem_need)
            mem_need = init_size;
        if (pref >= LAYOUT_HIGH_MEM)
            load = pref;
    } else if (k[HDR_RELOCATABLE]) {
        load = LAYOUT_KERNEL;
    }
    if (!guest_mem_ptr(m, load, mem_need)) {
        log_error("%s: the kernel needs %llu MiB of RAM from 0x%llx; give the guest more memory "
                  "with -m", name, (unsigned long long)(DIV_ROUND_UP(load + mem_need, MiB)),
                  (unsigned long long)load);
        return -ENOMEM;
    }
    guest_mem_write(m, load, pm, pm_len);

    /* The zero page: the kernel's own setup header, then what the loader fills in. */
    uint8_t bp[4096] = {0};
    size_t hdr_end = 0x202 + k[HDR_JUMP + 1];
    if (hdr_end > sizeof(bp) || hdr_end > req->kernel_len)
        hdr_end = 0x268;
    memcpy(bp + BP_SETUP_HEADER, k + BP_SETUP_HEADER, hdr_end - BP_SETUP_HEADER);
    bp[HDR_TYPE_OF_LOADER] = 0xFF; /* "undefined" boot loader, as other VMMs report */
    bp[HDR_VID_MODE] = 0xFF;       /* vid_mode: normal */
    bp[HDR_VID_MODE + 1] = 0xFF;
    wr32(bp + HDR_CODE32_START, (uint32_t)load);

    const char *cmdline = req->cmdline ? req->cmdline : "";
    size_t cmdlen = strlen(cmdline);
    uint32_t cmdline_max = version >= 0x0206 ? rd32(k + HDR_CMDLINE_SIZE) : 255;
    if (cmdlen > cmdline_max || cmdlen >= LAYOUT_CMDLINE_MAX) {
        log_error("%s: the kernel command line is %zu bytes; this kernel accepts at most %u",
                  name, cmdlen, MIN(cmdline_max, (uint32_t)LAYOUT_CMDLINE_MAX - 1));
        return -E2BIG;
    }
    guest_mem_write(m, LAYOUT_CMDLINE, cmdline, cmdlen + 1);
    wr32(bp + HDR_CMD_LINE_PTR, LAYOUT_CMDLINE);

    if (req->initrd) {
        uint32_t max = rd32(k + HDR_INITRD_ADDR_MAX);
        if (version < 0x0203 || max == 0)
            max = 0x37FFFFFF;
        uint64_t addr;
        if (boot_place_initrd(m, req->initrd_len, (uint64_t)max + 1, load, load + mem_need,
                              &addr) < 0) {
            log_error("%s: no room for the %zu-byte initrd below 0x%x; give the guest more "
                      "memory with -m", name, req->initrd_len, max);
            return -ENOMEM;
        }
        guest_mem_write(m, addr, req->initrd, req->initrd_len);
        wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)addr);
        wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)req->initrd_len);
        wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(addr >> 32));
        wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)req->initrd_len >> 32));
    }

    struct boot_memmap_entry map[BOOT_MEMMAP_MAX];
    unsigned n = boot_memmap(m, map);
    bp[BP_E820_ENTRIES] = (uint8_t)n;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = bp + BP_E820_TABLE + i * 20;
        memcpy(e, &map[i].addr, 8);
        memcpy(e + 8, &map[i].size, 8);
        memcpy(e + 16, &map[i].type, 4);
    }
    if (version >= 0x020E)
        memcpy(bp + BP_ACPI_RSDP_ADDR, &req->rsdp_addr, 8);
    guest_mem_write(m, LAYOUT_BOOT_PARAMS, bp, sizeof(bp));

    out->format = "bzImage";
    out->rsi = LAYOUT_BOOT_PARAMS;
    if (version >= 0x020C && (k[HDR_XLOADFLAGS] & XLF_KERNEL_64)) {
        out->mode = BOOT_MODE_LONG64;
        out->entry = load + 0x200;
        boot_write_gdt(m, true, out);
        boot_write_identity_paging(m, out);
    } else {
        out->mode = BOOT_MODE_PROTECTED32;
        out->entry = load;
        boot_write_gdt(m, false, out);
    }
    return 0;
}
