package client

import (
	"context"
	"net/http"

	"github.com/jobsd/jobsd/gen"
)

// The operator's API (/api/admin/...). Every call needs an admin's token;
// anyone else's is an *APIError with status 403 (see IsForbidden).

// AdminGet returns any user's job with its owner, worker and requeue links.
func (c *Client) AdminGet(ctx context.Context, id string) (*gen.AdminJob, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.AdminGetJobWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminAttempts returns the job's attempts, oldest first.
func (c *Client) AdminAttempts(ctx context.Context, id string) (*gen.AttemptList, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.AdminGetJobAttemptsWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminList returns one page of every user's jobs, newest first.
func (c *Client) AdminList(ctx context.Context, p gen.AdminListJobsParams) (*gen.AdminJobList, error) {
	resp, err := c.api.AdminListJobsWithResponse(ctx, &p)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminCancel cancels any user's PENDING or PROCESSING job.
func (c *Client) AdminCancel(ctx context.Context, id string) (*gen.AdminJob, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.AdminCancelJobWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminRequeue runs a FAILED job again as a new job, which it returns.
func (c *Client) AdminRequeue(ctx context.Context, id string) (*gen.AdminJob, error) {
	u, err := ParseID(id)
	if err != nil {
		return nil, err
	}
	resp, err := c.api.AdminRequeueJobWithResponse(ctx, u)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON202, resp.HTTPResponse, resp.Body)
}

// AdminRequeueFailed requeues FAILED jobs by filter (or, with DryRun,
// counts them).
func (c *Client) AdminRequeueFailed(ctx context.Context, req gen.RequeueRequest) (*gen.RequeueResult, error) {
	resp, err := c.api.AdminRequeueFailedWithResponse(ctx, req)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminStats returns the queue at a glance.
func (c *Client) AdminStats(ctx context.Context) (*gen.AdminStats, error) {
	resp, err := c.api.AdminGetStatsWithResponse(ctx)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// AdminWorkers returns the live workers.
func (c *Client) AdminWorkers(ctx context.Context) (*gen.WorkerList, error) {
	resp, err := c.api.AdminListWorkersWithResponse(ctx)
	if err != nil {
		return nil, err
	}
	return answer(resp.JSON200, resp.HTTPResponse, resp.Body)
}

// answer returns the success body, or the API's error as an *APIError.
func answer[T any](ok *T, resp *http.Response, body []byte) (*T, error) {
	if ok == nil {
		return nil, apiError(resp, body)
	}
	return ok, nil
}
