// Publishes and receives one message through the installed library and plugins.
#include <chrono>
#include <cstdio>

#include <ferry/ferry.hpp>

int main() {
    ferry::Node node("consumer");
    auto sub = node.subscribe<std::string>("installed");
    auto pub = node.advertise<std::string>("installed");
    if (!pub.wait_for_subscribers(1, std::chrono::seconds(5))) return 1;
    if (!pub.publish("hello from an installed ferry")) return 1;
    auto msg = sub.take(std::chrono::seconds(5));
    if (!msg) return 1;
    std::printf("%s on %s\n", msg->c_str(), sub.qos().transport.c_str());
    return 0;
}
