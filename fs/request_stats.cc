#include "fs/request_stats.h"

#include <cerrno>


namespace lazyfs::fs {

RequestCounters& Requests() {
  static RequestCounters* c = new RequestCounters();
  return *c;
}

void CountEio(const Status& status) {
  switch (status.code()) {
    case StatusCode::kUnavailable: Requests().eio_unavailable.Add(); break;
    case StatusCode::kDataLoss: Requests().eio_data_loss.Add(); break;
    default: Requests().eio_other.Add(); break;
  }
}

bool IsExpectedErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENODATA:
    case ERANGE:
    case EROFS:
    case EISDIR:
    case ENOTDIR:
    case EINVAL:
    case ENAMETOOLONG:
    case EACCES:
      return true;
    default:
      return false;
  }
}

}  // namespace lazyfs::fs
