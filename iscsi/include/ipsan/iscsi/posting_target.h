// ipsan/iscsi/posting_target.h: a GenericTarget that hands every request to another thread's
// io_context (where the SanClient lives) with asio::post. The completion runs on that thread.
//
// Threading: execute() may be called from any thread. The wrapped target and the io_context must
// outlive every request posted.
#pragma once

#include <utility>  // before Asio

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "ipsan/client/generic_target.h"

namespace ipsan::iscsi {

class PostingTarget final : public client::GenericTarget {
 public:
  PostingTarget(boost::asio::io_context& io, client::GenericTarget& target)
      : io_(io), target_(target) {}
  void execute(proto::Request request, std::function<void(proto::Reply)> done) override {
    boost::asio::post(io_, [this, request = std::move(request), done = std::move(done)]() mutable {
      target_.execute(std::move(request), std::move(done));
    });
  }

 private:
  boost::asio::io_context& io_;
  client::GenericTarget& target_;
};

}  // namespace ipsan::iscsi
