package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/store"
)

// MaxDelay is the longest DelaySeconds SQS accepts. A longer wait is sent
// as MaxDelay; the worker sends the message again for the rest when it
// arrives early.
const MaxDelay = 900 * time.Second

// batchSize is the most entries SendMessageBatch takes.
const batchSize = 10

// Queue sends job messages to one SQS queue.
type Queue struct {
	client *sqs.Client
	url    string
}

// NewQueue returns a Queue for the queue at url.
func NewQueue(client *sqs.Client, url string) *Queue {
	return &Queue{client: client, url: url}
}

// delaySeconds rounds d up to whole seconds within what SQS accepts, so
// that a message never arrives before its job may be claimed unless the
// wait is longer than MaxDelay.
func delaySeconds(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	return int32(math.Ceil(min(d, MaxDelay).Seconds()))
}

// SendJob sends one message for job id, visible after delay.
func (q *Queue) SendJob(ctx context.Context, id uuid.UUID, delay time.Duration) error {
	_, err := q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     &q.url,
		MessageBody:  aws.String(id.String()),
		DelaySeconds: delaySeconds(delay),
	})
	if err != nil {
		return fmt.Errorf("send message for job %s: %w", id, err)
	}
	return nil
}

// SendOutbox sends outbox rows in batches of ten and returns the Seq of
// those the queue accepted; it is a store.SendFunc. Entries the queue
// refused stay in the outbox for the next sweep, and their error is
// returned with the rest.
func (q *Queue) SendOutbox(ctx context.Context, msgs []store.OutboxMessage) (sent []int64, err error) {
	var errs []error
	for start := 0; start < len(msgs); start += batchSize {
		chunk := msgs[start:min(start+batchSize, len(msgs))]
		entries := make([]types.SendMessageBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = types.SendMessageBatchRequestEntry{
				Id:           aws.String(strconv.FormatInt(m.Seq, 10)),
				MessageBody:  aws.String(m.JobID.String()),
				DelaySeconds: delaySeconds(m.Delay),
			}
		}
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: entries})
		if err != nil {
			errs = append(errs, fmt.Errorf("send message batch: %w", err))
			continue
		}
		for _, ok := range out.Successful {
			seq, err := strconv.ParseInt(aws.ToString(ok.Id), 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("send message batch: unknown entry id %q", aws.ToString(ok.Id)))
				continue
			}
			sent = append(sent, seq)
		}
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("send message batch: entry %s refused: %s %s",
				aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	return sent, errors.Join(errs...)
}
