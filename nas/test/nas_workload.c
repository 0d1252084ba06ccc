/* nas_workload.c: a POSIX-style workload run either through libnfs against an NFS server
 * (nfs://... URL) or on a local directory, printing a manifest of the resulting tree so the two
 * can be compared (nas_integration_test). Also: `commit` / `verify` for the kill -9 test and
 * `bench` for bench/RESULTS.md.
 *
 *   nas_workload posix  URL|DIR      workload, then the manifest on stdout
 *   nas_workload commit URL N        write N files (64 KiB + i), fsync (COMMIT) each; prints "ok"
 *   nas_workload verify URL N        check the N files' contents
 *   nas_workload bench  URL MIB FILES  sequential write/read of a MIB MiB file, FILES creates
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nfsc/libnfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct nfs_context* nfs;  /* NULL: local mode */
static char root[4096];

static void die(const char* what, int err) {
  fprintf(stderr, "nas_workload: %s: %s (%s)\n", what, strerror(err),
          nfs ? nfs_get_error(nfs) : "local");
  exit(1);
}

static const char* P(const char* rel) { /* path for the current mode */
  static char buf[2][8192];
  static int n;
  n ^= 1;
  if (nfs) snprintf(buf[n], sizeof buf[n], "/%s", rel);
  else snprintf(buf[n], sizeof buf[n], "%s/%s", root, rel);
  return buf[n];
}

/* ---- thin POSIX layer: each returns 0 / bytes, or -errno ---- */
typedef struct { struct nfsfh* fh; int fd; } F;
static int w_open(const char* rel, int flags, int mode, F* f) {
  if (nfs) return nfs_open2(nfs, P(rel), flags, mode, &f->fh);
  f->fd = open(P(rel), flags, mode);
  return f->fd < 0 ? -errno : 0;
}
static int w_close(F* f) { return nfs ? nfs_close(nfs, f->fh) : (close(f->fd) < 0 ? -errno : 0); }
static long w_pwrite(F* f, const void* b, size_t n, uint64_t off) {
  if (nfs) return nfs_pwrite(nfs, f->fh, off, n, b);
  long r = pwrite(f->fd, b, n, (off_t)off);
  return r < 0 ? -errno : r;
}
static long w_pread(F* f, void* b, size_t n, uint64_t off) {
  if (nfs) return nfs_pread(nfs, f->fh, off, n, b);
  long r = pread(f->fd, b, n, (off_t)off);
  return r < 0 ? -errno : r;
}
static int w_fsync(F* f) { return nfs ? nfs_fsync(nfs, f->fh) : (fsync(f->fd) < 0 ? -errno : 0); }
#define LOCAL(call) ((call) < 0 ? -errno : 0)
static int w_mkdir(const char* r) { return nfs ? nfs_mkdir(nfs, P(r)) : LOCAL(mkdir(P(r), 0755)); }
static int w_rmdir(const char* r) { return nfs ? nfs_rmdir(nfs, P(r)) : LOCAL(rmdir(P(r))); }
static int w_unlink(const char* r) { return nfs ? nfs_unlink(nfs, P(r)) : LOCAL(unlink(P(r))); }
static int w_rename(const char* a, const char* b) {
  return nfs ? nfs_rename(nfs, P(a), P(b)) : LOCAL(rename(P(a), P(b)));
}
static int w_link(const char* a, const char* b) {
  return nfs ? nfs_link(nfs, P(a), P(b)) : LOCAL(link(P(a), P(b)));
}
static int w_symlink(const char* target, const char* b) {
  return nfs ? nfs_symlink(nfs, target, P(b)) : LOCAL(symlink(target, P(b)));
}
static int w_chmod(const char* r, int mode) {
  return nfs ? nfs_chmod(nfs, P(r), mode) : LOCAL(chmod(P(r), (mode_t)mode));
}
static int w_truncate(const char* r, uint64_t len) {
  return nfs ? nfs_truncate(nfs, P(r), len) : LOCAL(truncate(P(r), (off_t)len));
}
static int w_utimes(const char* r, long sec) {
  struct timeval tv[2] = {{sec, 0}, {sec, 0}};
  return nfs ? nfs_utimes(nfs, P(r), tv) : LOCAL(utimes(P(r), tv));
}
static int w_readlink(const char* r, char* buf, int n) {
  if (nfs) return nfs_readlink(nfs, P(r), buf, n);
  ssize_t k = readlink(P(r), buf, (size_t)n - 1);
  if (k < 0) return -errno;
  buf[k] = 0;
  return 0;
}
struct St { int dir, lnk, reg; unsigned mode; uint64_t size, nlink; long mtime; };
static int w_lstat(const char* r, struct St* s) {
  memset(s, 0, sizeof *s);
  if (nfs) {
    struct nfs_stat_64 st;
    int e = nfs_lstat64(nfs, P(r), &st);
    if (e < 0) return e;
    s->dir = S_ISDIR(st.nfs_mode); s->lnk = S_ISLNK(st.nfs_mode); s->reg = S_ISREG(st.nfs_mode);
    s->mode = (unsigned)(st.nfs_mode & 07777); s->size = st.nfs_size; s->nlink = st.nfs_nlink;
    s->mtime = (long)st.nfs_mtime;
    return 0;
  }
  struct stat st;
  if (lstat(P(r), &st) < 0) return -errno;
  s->dir = S_ISDIR(st.st_mode); s->lnk = S_ISLNK(st.st_mode); s->reg = S_ISREG(st.st_mode);
  s->mode = st.st_mode & 07777; s->size = (uint64_t)st.st_size; s->nlink = st.st_nlink;
  s->mtime = st.st_mtime;
  return 0;
}
/* Directory listing: names (without . and ..), sorted. Returns count. */
static int cmpstr(const void* a, const void* b) {
  return strcmp(*(char* const*)a, *(char* const*)b);
}
static int w_list(const char* r, char*** out) {
  int n = 0, cap = 64;
  char** v = malloc(sizeof(char*) * (size_t)cap);
  if (nfs) {
    struct nfsdir* d;
    int e = nfs_opendir(nfs, P(r), &d);
    if (e < 0) die("opendir", -e);
    struct nfsdirent* de;
    while ((de = nfs_readdir(nfs, d)) != NULL) {
      if (!strcmp(de->name, ".") || !strcmp(de->name, "..")) continue;
      if (n == cap) v = realloc(v, sizeof(char*) * (size_t)(cap *= 2));
      v[n++] = strdup(de->name);
    }
    nfs_closedir(nfs, d);
  } else {
    DIR* d = opendir(P(r));
    if (!d) die("opendir", errno);
    struct dirent* de;
    while ((de = readdir(d)) != NULL) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      if (n == cap) v = realloc(v, sizeof(char*) * (size_t)(cap *= 2));
      v[n++] = strdup(de->d_name);
    }
    closedir(d);
  }
  qsort(v, (size_t)n, sizeof(char*), cmpstr);
  *out = v;
  return n;
}

static void fill(unsigned char* b, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i) b[i] = (unsigned char)((i * 2654435761u + seed * 97) >> 7);
}
static uint64_t fnv(const unsigned char* b, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}
static void put_file(const char* rel, size_t n, uint64_t seed, int mode) {
  F f;
  int e = w_open(rel, O_CREAT | O_TRUNC | O_WRONLY, mode, &f);
  if (e < 0) die(rel, -e);
  unsigned char* b = malloc(n ? n : 1);
  fill(b, n, seed);
  size_t off = 0;
  while (off < n) {
    size_t chunk = n - off > 262144 ? 262144 : n - off;
    long k = w_pwrite(&f, b + off, chunk, off);
    if (k <= 0) die("pwrite", k < 0 ? (int)-k : EIO);
    off += (size_t)k;
  }
  free(b);
  w_close(&f);
}
static void expect(const char* what, int got, int want) {
  printf("%s: %s\n", what, got == 0 ? "ok" : strerror(-got));
  if (got != want) {
    fprintf(stderr, "nas_workload: %s: got %d want %d\n", what, got, want);
    exit(1);
  }
}

static void manifest(const char* rel, int depth) {
  char** names;
  int n = w_list(rel, &names);
  for (int i = 0; i < n; ++i) {
    char path[8192];
    snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", names[i]);
    if (depth == 0 && !strcmp(names[i], "lost+found")) {
      free(names[i]);
      continue;
    }
    struct St s;
    int e = w_lstat(path, &s);
    if (e < 0) die(path, -e);
    if (s.dir) {
      printf("d %s %o\n", path, s.mode);
      manifest(path, depth + 1);
    } else if (s.lnk) {
      char t[4096];
      e = w_readlink(path, t, sizeof t);
      if (e < 0) die("readlink", -e);
      printf("l %s -> %s\n", path, t);
    } else {
      F f;
      e = w_open(path, O_RDONLY, 0, &f);
      if (e < 0) die(path, -e);
      unsigned char* b = malloc(s.size ? s.size : 1);
      uint64_t got = 0;
      while (got < s.size) {
        long k = w_pread(&f, b + got, s.size - got > 1048576 ? 1048576 : s.size - got, got);
        if (k <= 0) die("pread", k < 0 ? (int)-k : EIO);
        got += (uint64_t)k;
      }
      w_close(&f);
      printf("f %s %o size=%" PRIu64 " nlink=%" PRIu64 " fnv=%016" PRIx64 "%s\n", path, s.mode,
             s.size, s.nlink, fnv(b, s.size, 1469598103934665603ull),
             s.mtime == 1000000000 ? " mtime=set" : "");
      free(b);
    }
    free(names[i]);
  }
  free(names);
}

static void posix(void) {
  char name[512];
  expect("mkdir a", w_mkdir("a"), 0);
  expect("mkdir a/b", w_mkdir("a/b"), 0);
  expect("mkdir big", w_mkdir("big"), 0);
  expect("mkdir a again", w_mkdir("a"), -EEXIST);
  for (int i = 0; i < 600; ++i) {  /* a large directory: READDIRPLUS in several replies */
    snprintf(name, sizeof name, "big/file-with-a-longish-name-%04d", i);
    put_file(name, (size_t)(i % 7) * 100, (uint64_t)i, 0644);
  }
  for (int i = 0; i < 600; i += 3) {
    snprintf(name, sizeof name, "big/file-with-a-longish-name-%04d", i);
    int e = w_unlink(name);
    if (e < 0) die(name, -e);
  }
  printf("unlinked every third file of big/\n");
  put_file("a/large", 3u << 20, 7, 0644);
  {  /* read back, overwrite in the middle, read again */
    F f;
    expect("open a/large", w_open("a/large", O_RDWR, 0, &f), 0);
    unsigned char* want = malloc(3u << 20);
    unsigned char* got = malloc(3u << 20);
    fill(want, 3u << 20, 7);
    uint64_t off = 0;
    while (off < (3u << 20)) {
      long k = w_pread(&f, got + off, 1u << 20, off);
      if (k <= 0) die("pread", k < 0 ? (int)-k : EIO);
      off += (uint64_t)k;
    }
    printf("readback large: %s\n", memcmp(want, got, 3u << 20) ? "MISMATCH" : "ok");
    unsigned char patch[10000];
    fill(patch, sizeof patch, 99);
    if (w_pwrite(&f, patch, sizeof patch, 1000003) != (long)sizeof patch) die("pwrite mid", EIO);
    expect("fsync large", w_fsync(&f), 0);
    w_close(&f);
    free(want);
    free(got);
  }
  put_file("a/tr", 100000, 3, 0644);
  expect("truncate smaller", w_truncate("a/tr", 5000), 0);
  expect("truncate larger", w_truncate("a/tr", 70000), 0);
  put_file("a/one", 1234, 11, 0644);
  expect("link", w_link("a/one", "a/b/two"), 0);
  expect("link exists", w_link("a/one", "a/b/two"), -EEXIST);
  expect("symlink", w_symlink("../one", "a/b/sym"), 0);
  expect("symlink long", w_symlink("x/y/z/0123456789012345678901234567890123456789012345678901234567890123456789", "a/lsym"), 0);
  expect("chmod", w_chmod("a/one", 0600), 0);
  expect("utimes", w_utimes("a/one", 1000000000), 0);
  put_file("a/r1", 10, 1, 0644);
  put_file("a/r2", 20, 2, 0644);
  expect("rename same dir", w_rename("a/r1", "a/r1x"), 0);
  expect("rename over existing", w_rename("a/r1x", "a/r2"), 0);
  expect("rename across dirs", w_rename("a/r2", "a/b/r3"), 0);
  expect("mkdir m", w_mkdir("m"), 0);
  expect("mkdir m/in", w_mkdir("m/in"), 0);
  put_file("m/in/f", 5, 5, 0644);
  expect("rename dir across", w_rename("m/in", "a/b/moved"), 0);
  expect("rename dir into itself", w_rename("a/b", "a/b/moved/x"), -EINVAL);
  expect("rmdir non-empty", w_rmdir("a/b/moved"), -ENOTEMPTY);
  expect("rmdir empty", w_rmdir("m"), 0);
  expect("unlink missing", w_unlink("a/nothing"), -ENOENT);
  memset(name, 'n', 300);
  name[300] = 0;
  char longp[600];
  snprintf(longp, sizeof longp, "a/%s", name);
  F f;
  expect("create long name", w_open(longp, O_CREAT | O_WRONLY, 0644, &f), -ENAMETOOLONG);
  expect("create exclusive existing", w_open("a/one", O_CREAT | O_EXCL | O_WRONLY, 0644, &f),
         -EEXIST);
  expect("create exclusive new", w_open("a/excl", O_CREAT | O_EXCL | O_WRONLY, 0640, &f), 0);
  w_close(&f);
  expect("unlink a/one", w_unlink("a/one"), 0);
  printf("--- manifest\n");
  manifest("", 0);
}

static void commit_files(int n, int verify) {
  if (!verify) w_mkdir("durable");
  for (int i = 0; i < n; ++i) {
    char name[64];
    snprintf(name, sizeof name, "durable/f%03d", i);
    size_t len = 65536 + (size_t)i;
    unsigned char* b = malloc(len);
    F f;
    if (!verify) {
      fill(b, len, (uint64_t)i + 1000);
      int e = w_open(name, O_CREAT | O_TRUNC | O_WRONLY, 0644, &f);
      if (e < 0) die(name, -e);
      if (w_pwrite(&f, b, len, 0) != (long)len) die("pwrite", EIO);
      e = w_fsync(&f);
      if (e < 0) die("fsync", -e);
      w_close(&f);
    } else {
      unsigned char* want = malloc(len);
      fill(want, len, (uint64_t)i + 1000);
      int e = w_open(name, O_RDONLY, 0, &f);
      if (e < 0) die(name, -e);
      long k = w_pread(&f, b, len, 0);
      if (k != (long)len || memcmp(b, want, len) != 0) {
        fprintf(stderr, "nas_workload: %s: lost or wrong after restart\n", name);
        exit(1);
      }
      w_close(&f);
      free(want);
    }
    free(b);
  }
  printf("ok\n");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void bench(int mib, int files) {
  const size_t bs = 1u << 20;
  unsigned char* b = malloc(bs);
  fill(b, bs, 5);
  F f;
  double t0 = now_s();
  int e = w_open("bench.dat", O_CREAT | O_TRUNC | O_WRONLY, 0644, &f);
  if (e < 0) die("bench.dat", -e);
  for (int i = 0; i < mib; ++i) {
    if (w_pwrite(&f, b, bs, (uint64_t)i * bs) != (long)bs) die("pwrite", EIO);
  }
  w_fsync(&f);
  w_close(&f);
  double t1 = now_s();
  e = w_open("bench.dat", O_RDONLY, 0, &f);
  if (e < 0) die("bench.dat", -e);
  for (int i = 0; i < mib; ++i) {
    if (w_pread(&f, b, bs, (uint64_t)i * bs) != (long)bs) die("pread", EIO);
  }
  w_close(&f);
  double t2 = now_s();
  w_mkdir("small");
  for (int i = 0; i < files; ++i) {
    char name[64];
    snprintf(name, sizeof name, "small/f%06d", i);
    e = w_open(name, O_CREAT | O_WRONLY, 0644, &f);
    if (e < 0) die(name, -e);
    w_close(&f);
  }
  double t3 = now_s();
  printf("write_MBps=%.1f read_MBps=%.1f creates_per_s=%.0f\n", mib / (t1 - t0),
         mib / (t2 - t1), files / (t3 - t2));
  free(b);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: nas_workload posix|commit|verify|bench URL|DIR [N] [FILES]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strncmp(argv[2], "nfs://", 6)) {
    nfs = nfs_init_context();
    struct nfs_url* url = nfs_parse_url_dir(nfs, argv[2]);
    if (!url) die("url", EINVAL);
    if (nfs_mount(nfs, url->server, url->path) != 0) die("mount", EIO);
    nfs_destroy_url(url);
  } else {
    snprintf(root, sizeof root, "%s", argv[2]);
  }
  if (!strcmp(argv[1], "posix")) posix();
  else if (!strcmp(argv[1], "commit")) commit_files(argc > 3 ? atoi(argv[3]) : 20, 0);
  else if (!strcmp(argv[1], "verify")) commit_files(argc > 3 ? atoi(argv[3]) : 20, 1);
  else if (!strcmp(argv[1], "bench")) bench(argc > 3 ? atoi(argv[3]) : 64, argc > 4 ? atoi(argv[4]) : 1000);
  else return 2;
  if (nfs) nfs_destroy_context(nfs);
  return 0;
}
