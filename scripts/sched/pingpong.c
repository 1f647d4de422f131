/* Round trips between two processes over a socketpair, to see when this machine's scheduler
 * runs the woken process on the waker's vCPU (BENCHMARKS.md, "Where the wake-ups land").
 * The child spins `work` µs per message before answering; the parent sleeps `pause` µs
 * between round trips (0: none). Prints the round trip's p50 and p90 beyond the child's work.
 *
 *   gcc -O2 -o /tmp/pingpong scripts/sched/pingpong.c
 *   /tmp/pingpong <work µs> <pause µs> <round trips>     e.g. /tmp/pingpong 50 0 2000
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void spin(double us) {
  double start = now_us();
  while (now_us() - start < us) {
  }
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <work µs> <pause µs> <round trips>\n", argv[0]);
    return 2;
  }
  double work = atof(argv[1]), pause = atof(argv[2]);
  int n = atoi(argv[3]);
  int sv[2];
  char byte = 'x';
  if (n <= 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  if (fork() == 0) {
    /* The child must not hold the parent's end, or it would never see it closed. */
    close(sv[0]);
    while (read(sv[1], &byte, 1) == 1) {
      spin(work);
      if (write(sv[1], &byte, 1) != 1) break;
    }
    return 0;
  }
  close(sv[1]);
  double *extra = malloc(n * sizeof(double));
  for (int i = 0; i < n; i++) {
    if (pause > 0) usleep((useconds_t)pause);
    double start = now_us();
    if (write(sv[0], &byte, 1) != 1 || read(sv[0], &byte, 1) != 1) return 1;
    extra[i] = now_us() - start - work;
  }
  close(sv[0]);
  wait(NULL);
  qsort(extra, n, sizeof(double), by_value);
  printf("work %.0f µs, pause %.0f µs: round trip beyond the work p50 %.1f µs, p90 %.1f µs\n",
         work, pause, extra[n / 2], extra[n * 9 / 10]);
  free(extra);
  return 0;
}
