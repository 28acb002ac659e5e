// Completing a storage operation's handler on the handler's own executor, never inline, so a
// coroutine never resumes inside its own initiation nor on a storage thread.
#pragma once

#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>

namespace fluxrelay {

template <class... Args>
void complete(boost::asio::any_completion_handler<void(Args...)> handler, Args... args) {
    namespace execution = boost::asio::execution;
    auto executor = boost::asio::prefer(boost::asio::get_associated_executor(handler, boost::asio::system_executor()),
                                        execution::blocking.never, execution::outstanding_work.tracked);
    executor.execute([handler = std::move(handler), ... args = std::move(args)]() mutable {
        std::move(handler)(std::move(args)...);
    });
}

}  // namespace fluxrelay
