#include "ipsan/manager/db.h"

#include <sqlite3.h>

namespace ipsan::manager {

Stmt::Stmt(sqlite3* db, std::string_view sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK)
    throw DbError(std::string("SQL prepare: ") + sqlite3_errmsg(db) + " in: " + std::string(sql));
}
Stmt::~Stmt() { sqlite3_finalize(st_); }
Stmt& Stmt::bind(int i, std::int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}
Stmt& Stmt::bind(int i, const std::string& v) {
  sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}
bool Stmt::step() {
  const int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw DbError(std::string("SQL: ") + sqlite3_errmsg(db_));
}
std::int64_t Stmt::i64(int c) const { return sqlite3_column_int64(st_, c); }
std::string Stmt::text(int c) const {
  const auto* p = sqlite3_column_text(st_, c);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<std::size_t>(sqlite3_column_bytes(st_, c)))
           : std::string();
}
bool Stmt::is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
void Stmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

Db::~Db() {
  if (db_) sqlite3_close(db_);
}

void Db::exec(std::string_view sql) {
  char* err = nullptr;
  const std::string s(sql);
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    throw DbError("SQL: " + m);
  }
}

std::int64_t Db::last_insert_id() const { return sqlite3_last_insert_rowid(db_); }
int Db::changes() const { return sqlite3_changes(db_); }

int Db::schema_version() {
  Stmt s(db_, "PRAGMA user_version");
  s.step();
  return static_cast<int>(s.i64(0));
}

Result<Db, Error> Db::open(const std::string& path, const std::vector<std::string>& migrations) {
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string m = raw ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close(raw);
    return fail("cannot open database " + path + ": " + m);
  }
  Db db(raw);
  try {
    sqlite3_busy_timeout(raw, 5000);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=FULL");
    db.exec("PRAGMA foreign_keys=ON");
    const int have = db.schema_version();
    const int want = static_cast<int>(migrations.size());
    if (have > want)
      return fail("database " + path + " has schema version " + std::to_string(have) +
                  ", newer than this ipsan knows (" + std::to_string(want) + "); refusing to use it");
    for (int v = have; v < want; ++v) {
      Txn t(db);
      db.exec(migrations[static_cast<std::size_t>(v)]);
      db.exec("PRAGMA user_version=" + std::to_string(v + 1));
      t.commit();
    }
  } catch (const DbError& e) {
    return fail("database " + path + ": " + e.what());
  }
  return db;
}

}  // namespace ipsan::manager
