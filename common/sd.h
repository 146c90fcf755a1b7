/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Talking to systemd without libsystemd: readiness, reloads and watchdog
 * pings on $NOTIFY_SOCKET (sd_notify(3)'s datagrams), and log records with
 * fields on the journal's native socket. Both do nothing outside systemd. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sends a state ("READY=1", "WATCHDOG=1", "RELOADING=1\nMONOTONIC_USEC=...",
 * "STATUS=..."); 0 when there is no $NOTIFY_SOCKET. */
int sd_notify_send(const char *state);

/* $WATCHDOG_USEC when it is meant for this process, else 0. */
uint64_t sd_watchdog_usec(void);

/* Whether logs should go to the journal as records with fields: the
 * process runs under systemd with its stderr on the journal
 * ($JOURNAL_STREAM) and the native socket is there
 * (/run/systemd/journal/socket; $NM_JOURNAL_SOCKET for the project's tests). */
bool sd_journal_wanted(void);

/* One record: kv holds n strings, KEY, value, KEY, value, ... (a NULL value
 * leaves its field out). Keys are uppercase, as the journal wants. */
int sd_journal_send_fields(const char *const *kv, size_t n);
/* The record's bytes: "KEY=value\n" per field, or for a value with a
 * newline KEY, "\n", its length (64-bit little-endian), the value, "\n". A
 * field that does not fit is left out. Returns the length. */
size_t sd_journal_format(char *buf, size_t size, const char *const *kv, size_t n);
