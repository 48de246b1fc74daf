/* fd_status.h -- what a csrc function that can fail returns: 0 on success, else one of these.
 * _kernels maps them to Python exceptions (MemoryError, ValueError, PlanLimitError). */
#ifndef FD_STATUS_H
#define FD_STATUS_H

typedef enum fd_status {
    FD_OK = 0,
    FD_ERR_NOMEM = -1,   /* an allocation failed */
    FD_ERR_ARG = -2,     /* an argument out of its range (a caller's bug) */
    FD_ERR_LIMIT = -3,   /* the request exceeds a fixed limit of the C code */
    FD_ERR_INDEX = -4    /* an index from the data (an embedding id) outside its table */
} fd_status;

#endif
