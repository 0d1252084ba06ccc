// ipsan/manager/db.h: a small RAII layer over SQLite (WAL mode, schema migrations).
//
// Db opens the file in WAL mode with synchronous=FULL (a committed transaction survives power
// loss) and foreign keys on, then applies the migrations the file has not seen yet, each in its
// own transaction, recording the version in PRAGMA user_version. A file written by a newer ipsan
// (higher version) is refused rather than misread.
// Threading: one Db per thread, or guarded by the caller's mutex (the manager does the latter).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ipsan/base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ipsan::manager {

using Value = std::variant<std::nullptr_t, std::int64_t, std::string>;

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int index, std::int64_t v);
  Stmt& bind(int index, const std::string& v);
  Stmt& bind_null(int index);
  // true: a row is available; false: done. Throws DbError on failure.
  bool step();
  std::int64_t i64(int col) const;
  std::string text(int col) const;
  bool is_null(int col) const;
  void reset();

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

struct DbError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Db {
 public:
  static Result<Db, Error> open(const std::string& path,
                                const std::vector<std::string>& migrations);
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&&) = delete;
  ~Db();
  void exec(std::string_view sql);  // throws DbError
  Stmt prepare(std::string_view sql) { return Stmt(db_, sql); }
  std::int64_t last_insert_id() const;
  int changes() const;
  int schema_version();
  sqlite3* raw() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back if not committed (exception or early return).
class Txn {
 public:
  explicit Txn(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
  ~Txn() {
    if (!done_) {
      try {
        db_.exec("ROLLBACK");
      } catch (...) {
      }
    }
  }
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Db& db_;
  bool done_ = false;
};

}  // namespace ipsan::manager
