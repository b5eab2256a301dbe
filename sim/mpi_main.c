/* mpi_main.c - apxsim-mpi: a thin, optional OpenMPI front end to the sweep.
 *
 *   mpirun -n R apxsim-mpi CONFIG.yaml -o OUT.db [--threads T]
 *
 * Each rank loads the plan and runs shard rank of size (the jobs whose index
 * in plan order is rank modulo size, as `apxsim sweep --shard rank+1/size`)
 * into its own database OUT.db.shard-<rank>-of-<size>. After a barrier, rank 0
 * adds every shard file to OUT.db with store_merge (as `apxsim merge`). No
 * result rows travel over MPI: only the ranks' exit statuses do, so an error
 * on any rank makes every rank exit non-zero. Exit statuses as apxsim's:
 * 0 success, 1 failure during work, 2 bad input or usage, 130 interrupted.
 * Shard files are kept: re-running the same command resumes every shard and
 * merges again (merging is idempotent). docs/sweeps.md, "Splitting a sweep". */
#include <getopt.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/error.h"
#include "sim/store.h"
#include "sim/sweep.h"

static const char usage[] =
    "usage: mpirun -n R apxsim-mpi CONFIG.yaml -o OUT.db [--threads T]\n"
    "\n"
    "Runs a sweep as R shards, one per MPI rank, each into OUT.db.shard-<rank>-of-<R>,\n"
    "then rank 0 merges the shard files into OUT.db. -o defaults to the config's\n"
    "output. --threads T: threads per rank (default: one per core).\n";

static volatile int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* Parses the command line into *config, *output, *threads; APX_EINPUT with a
 * message in err on bad usage, -1 for --help. Every rank parses the same
 * arguments, so every rank reaches the same verdict. */
static int parse_args(int argc, char **argv, const char **config, const char **output,
                      uint32_t *threads, apx_error *err) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': *output = optarg; break;
        case 'j': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || v > 256)
                return apx_fail(err, APX_EINPUT, "--threads needs a count up to 256, got '%s'",
                                optarg);
            *threads = (uint32_t)v;
            break;
        }
        case 'h': return -1;
        default: return apx_fail(err, APX_EINPUT, "unknown option or missing value");
        }
    }
    if (optind + 1 != argc) return apx_fail(err, APX_EINPUT, "expects one CONFIG.yaml");
    *config = argv[optind];
    return APX_OK;
}

/* Runs this rank's shard; returns an apx_error code. */
static int run_shard(const char *config, const char *output, uint32_t threads, int rank,
                     int size, char *shard_db, size_t shard_len, const char **out_db,
                     apx_error *err) {
    sweep_plan plan;
    int rc = sweep_plan_load(config, &plan, err);
    if (rc) return rc;
    const char *db = output ? output : plan.output;
    if (!db || !*db) {
        sweep_plan_free(&plan);
        return apx_fail(err, APX_EINPUT, "no output database: give -o OUT.db");
    }
    int n = snprintf(shard_db, shard_len, "%s.shard-%d-of-%d", db, rank, size);
    if (n < 0 || (size_t)n >= shard_len) {
        sweep_plan_free(&plan);
        return apx_fail(err, APX_EINPUT, "output path too long: %s", db);
    }
    *out_db = db;
    plan.shard_index = (uint32_t)rank;
    plan.shard_count = (uint32_t)size;
    sweep_stats st;
    rc = sweep_run(&plan, shard_db, cfg_text(plan.doc), threads, NULL, NULL, &stop_flag, &st,
                   err);
    if (rc == APX_OK)
        printf("apxsim-mpi: rank %d/%d: %zu jobs run, %zu already in %s, %.1f s\n", rank, size,
               st.jobs_done, st.jobs_skipped, shard_db, st.seconds);
    fflush(stdout);
    /* plan owns the strings *out_db may point to: keep a copy before freeing. */
    if (!output) {
        static char kept[4096];
        snprintf(kept, sizeof kept, "%s", db);
        *out_db = kept;
    }
    sweep_plan_free(&plan);
    return rc;
}

/* Rank 0: merges the size shard files of out_db into out_db. */
static int merge_shards(const char *out_db, int size, apx_error *err) {
    store *out;
    int rc = store_open(out_db, &out, err);
    if (rc) return rc;
    int64_t total = 0;
    char path[4200];
    for (int r = 0; r < size && rc == APX_OK; r++) {
        snprintf(path, sizeof path, "%s.shard-%d-of-%d", out_db, r, size);
        int64_t added = 0;
        rc = store_merge(out, path, &added, err);
        total += added;
    }
    int64_t rows = 0;
    if (rc == APX_OK) rc = store_count_evals(out, &rows, err);
    store_close(out);
    if (rc == APX_OK)
        printf("%s: %lld evaluations merged from %d shards, %lld in all\n", out_db,
               (long long)total, size, (long long)rows);
    return rc;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    apx_error err = {0};
    const char *config = NULL, *output = NULL, *out_db = NULL;
    uint32_t threads = 0;
    int rc = parse_args(argc, argv, &config, &output, &threads, &err);
    if (rc == -1) {
        if (rank == 0) fputs(usage, stdout);
        MPI_Finalize();
        return 0;
    }
    if (rc) {
        if (rank == 0) fprintf(stderr, "apxsim-mpi: %s\n%s", err.msg, usage);
        MPI_Finalize();
        return rc;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    static char shard_db[4200];
    rc = run_shard(config, output, threads, rank, size, shard_db, sizeof shard_db, &out_db,
                   &err);
    if (rc && rc != APX_EINTR) fprintf(stderr, "apxsim-mpi: rank %d: %s\n", rank, err.msg);
    if (rc == APX_EINTR)
        fprintf(stderr, "apxsim-mpi: rank %d interrupted; run the same command again to finish\n",
                rank);

    /* Every rank learns the worst status; the exit codes are ordered so that
     * the maximum is the one to report (130 > 2 > 1 > 0). */
    MPI_Barrier(MPI_COMM_WORLD);
    int worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (worst == APX_OK && rank == 0) {
        rc = merge_shards(out_db, size, &err);
        if (rc) fprintf(stderr, "apxsim-mpi: merging into %s: %s\n", out_db, err.msg);
    }
    if (worst == APX_OK) MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    else rc = worst;
    fflush(stdout);
    MPI_Finalize();
    return rc;
}
