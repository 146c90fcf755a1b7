/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* AES-CTR for libssh2, a keystream block at a time.
 *
 * libssh2 1.10 encrypts a packet by calling EVP_Cipher() once per 16-byte
 * block, and OpenSSL's own AES-CTR pays its dispatch for each of those
 * calls: about 0.9 ns per byte here, ten times what the same cipher costs
 * on 4 KiB at once, and the largest single cost of our sending loop. This
 * module registers an OpenSSL provider ("nm-ctr") with AES-128/192/256-CTR
 * whose contexts ask OpenSSL's own AES-CTR (the default provider) for 4 KiB
 * of keystream at a time and XOR each call's bytes with the next unused
 * part of it. The output is exactly that of OpenSSL's AES-CTR for the same
 * key, counter and bytes, however the calls split them (tests/unit/
 * test-ssh-ctr.c); each keystream byte is used once.
 *
 * Installing it makes the process's fetches prefer it for those three
 * names only (an optional "provider=nm-ctr" in the default properties);
 * every other algorithm, and any fetch naming its own provider, is as
 * before. libssh2's legacy EVP_aes_*_ctr() objects are fetched implicitly
 * at EVP_CipherInit(), so its sessions pick it up. OpenSSL's random
 * generator, which would too, is pinned to the default provider first:
 * no random byte depends on this code. A caller that re-initialises a
 * context without a counter after bytes went through gets its next bytes
 * refused, not encrypted differently from OpenSSL's. If installing fails,
 * OpenSSL's own AES-CTR stays in use: slower, never wrong. */

#include "error.h"

#define XFER_SSH_CTR_PROVIDER "nm-ctr"

/* Registers and prefers the provider, once per process; later calls return
 * the first call's result (0, or a negative errno with err set). */
int xfer_ssh_ctr_install(nm_error *err);

/* How many cipher contexts the provider has made: the tests' way to see
 * who uses it. */
unsigned long xfer_ssh_ctr_contexts(void);
