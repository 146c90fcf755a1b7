/* SPDX-License-Identifier: Apache-2.0 */
#include "journal.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

#define JOURNAL_REC_MAX (1 << 20)

struct journal {
        int dfd;         /* journal directory */
        int done_dfd;    /* journal/done */
        uint64_t keep_s; /* finished records are kept this long (by mtime: when they finished) */
};

bool journal_valid_id(const char *mig) {
        size_t n = strlen(mig);
        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)mig[i]) && mig[i] != '-' && mig[i] != '_')
                        return false;
        return true;
}

int journal_open(const char *dir, journal **ret, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF, done = -EBADF;
        journal *j;

        dfd = mkdir_p_secure(dir, 0700);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open journal directory %s", dir);
        done = mkdirat_secure(dfd, "done", 0700);
        if (done < 0)
                return nm_error_errno(err, done, "cannot open %s/done", dir);
        j = malloc(sizeof(*j));
        if (!j)
                return nm_error_set(err, -ENOMEM, "out of memory");
        j->dfd = TAKE_FD(dfd);
        j->done_dfd = TAKE_FD(done);
        j->keep_s = JOURNAL_KEEP_DEFAULT_S;
        *ret = j;
        return 0;
}

journal *journal_free(journal *j) {
        if (!j)
                return NULL;
        close(j->dfd);
        close(j->done_dfd);
        free(j);
        return NULL;
}

static void rec_name(char out[80], const char *mig) {
        snprintf(out, 80, "%s.json", mig);
}

char *journal_record_text(const json_t *rec) {
        return json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

int journal_put(journal *j, const char *mig, json_t *rec, nm_error *err) {
        _cleanup_free_ char *text = journal_record_text(rec);

        if (!text)
                return nm_error_set(err, -ENOMEM, "cannot serialise journal record");
        return journal_put_text(j, mig, text, err);
}

int journal_put_text(journal *j, const char *mig, const char *text, nm_error *err) {
        char name[80];
        int r;

        if (!journal_valid_id(mig))
                return nm_error_set(err, -EINVAL, "invalid migration id \"%s\"", mig);
        rec_name(name, mig);
        r = write_file_atomic_at(j->dfd, name, text, strlen(text), 0600);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write journal record %s", name);
        return 0;
}

static int load_one(int dfd, const char *name, json_t *into, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        json_error_t jerr;
        json_t *rec;
        int r;

        r = read_file_at(dfd, name, JOURNAL_REC_MAX, &text, NULL);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read journal record %s", name);
        rec = json_loads(text, 0, &jerr);
        if (!rec || !json_is_object(rec)) {
                json_decref(rec);
                return nm_error_set(err, -EBADMSG, "journal record %s is corrupt: %s", name, jerr.text);
        }
        json_array_append_new(into, rec);
        return 0;
}

/* Records are "<id>.json"; "<id>.json.tmp" leftovers from a crash are not. */
static bool is_record(const struct dirent *de) {
        size_t n = strlen(de->d_name);
        return de->d_type != DT_DIR && n > 5 && strcmp(de->d_name + n - 5, ".json") == 0;
}

int journal_load_active(journal *j, json_t **ret, nm_error *err) {
        json_t *all = json_array();
        DIR *d;
        struct dirent *de;
        int r = 0;

        d = fs_opendir_dup(j->dfd);
        if (!d) {
                json_decref(all);
                return nm_error_errno(err, negative_errno(), "cannot list journal");
        }
        rewinddir(d);
        while ((de = readdir(d)) && r >= 0)
                if (is_record(de))
                        r = load_one(j->dfd, de->d_name, all, err);
        closedir(d);
        if (r < 0) {
                json_decref(all);
                return r;
        }
        *ret = all;
        return 0;
}

typedef struct done_ent {
        char name[80];
        struct timespec mtime;
} done_ent;

static int cmp_newest_first(const void *a, const void *b) {
        const done_ent *x = a, *y = b;
        if (x->mtime.tv_sec != y->mtime.tv_sec)
                return x->mtime.tv_sec < y->mtime.tv_sec ? 1 : -1;
        if (x->mtime.tv_nsec != y->mtime.tv_nsec)
                return x->mtime.tv_nsec < y->mtime.tv_nsec ? 1 : -1;
        return strcmp(x->name, y->name);
}

/* Finished records sorted newest first. */
static int list_done(journal *j, done_ent **ret, size_t *ret_n) {
        _cleanup_free_ done_ent *v = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d = fs_opendir_dup(j->done_dfd);

        if (!d)
                return negative_errno();
        rewinddir(d);
        while ((de = readdir(d))) {
                struct stat st;
                if (!is_record(de) || strlen(de->d_name) >= sizeof(v->name) ||
                    fstatat(j->done_dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (n == cap) {
                        done_ent *nv = realloc(v, (cap = cap ? 2 * cap : 32) * sizeof(*v));
                        if (!nv) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
                v[n++].mtime = st.st_mtim;
        }
        closedir(d);
        if (n)
                qsort(v, n, sizeof(*v), cmp_newest_first);
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

int journal_load_done(journal *j, size_t max, json_t **ret, nm_error *err) {
        return journal_load_done_since(j, max, 0, ret, err);
}

int journal_load_done_since(journal *j, size_t max, int64_t since_s, json_t **ret, nm_error *err) {
        _cleanup_free_ done_ent *v = NULL;
        size_t n = 0;
        json_t *all;
        int r;

        r = list_done(j, &v, &n);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list finished migrations");
        all = json_array();
        for (size_t i = 0; i < n && i < max && v[i].mtime.tv_sec >= since_s; i++) {
                nm_error ignored = {};
                /* A damaged old record must not hide the others. */
                (void)load_one(j->done_dfd, v[i].name, all, &ignored);
        }
        *ret = all;
        return 0;
}

void journal_set_keep(journal *j, uint64_t keep_s) {
        j->keep_s = keep_s;
}

int journal_load_done_one(journal *j, const char *mig, json_t **ret) {
        json_t *one = json_array();
        char name[80];
        int r;

        if (!journal_valid_id(mig)) {
                json_decref(one);
                return -EINVAL;
        }
        rec_name(name, mig);
        nm_error ignored = {};
        r = load_one(j->done_dfd, name, one, &ignored);
        if (r >= 0)
                *ret = json_incref(json_array_get(one, 0));
        json_decref(one);
        return r;
}

/* By time, not by count: one drain of a large node must not push this
 * week's moves out of the history. */
static void prune_done(journal *j) {
        _cleanup_free_ done_ent *v = NULL;
        struct timespec now;
        size_t n = 0;

        if (!j->keep_s || list_done(j, &v, &n) < 0 || clock_gettime(CLOCK_REALTIME, &now) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                if ((uint64_t)(now.tv_sec - v[i].mtime.tv_sec) > j->keep_s)
                        (void)unlinkat(j->done_dfd, v[i].name, 0);
}

void journal_prune(journal *j) {
        prune_done(j);
}

int journal_finish(journal *j, const char *mig, nm_error *err) {
        char name[80];

        if (!journal_valid_id(mig))
                return nm_error_set(err, -EINVAL, "invalid migration id \"%s\"", mig);
        rec_name(name, mig);
        if (renameat(j->dfd, name, j->done_dfd, name) < 0)
                return nm_error_errno(err, negative_errno(), "cannot move journal record %s to done/", name);
        if (fsync(j->done_dfd) < 0 || fsync(j->dfd) < 0)
                return nm_error_errno(err, negative_errno(), "cannot sync journal");
        return 0;
}

int journal_forget(journal *j, const char *mig, nm_error *err) {
        char name[80];

        if (!journal_valid_id(mig))
                return nm_error_set(err, -EINVAL, "invalid migration id \"%s\"", mig);
        rec_name(name, mig);
        if (unlinkat(j->done_dfd, name, 0) < 0 && errno != ENOENT)
                return nm_error_errno(err, negative_errno(), "cannot remove finished record %s", name);
        return 0;
}
